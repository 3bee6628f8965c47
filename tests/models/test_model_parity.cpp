// Parity of our UNet3DConditionModel and AutoencoderKL with diffusers: make_model_golden.py beside
// this file saves tiny random models as diffusers folders plus inputs/outputs/gradients; we load
// the folders with our strict loader and compare. Also every refusal of a bad folder.
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "models/autoencoder_kl.hpp"
#include "models/clip_text.hpp"
#include "models/unet3d.hpp"
#include "models/weights.hpp"
#include "golden_tensors.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::models;
namespace stdfs = std::filesystem;

namespace {

struct ModelGoldenScript {
  static constexpr const char* path = "tests/models/make_model_golden.py";
};
using ModelGolden = test::GoldenTest<ModelGoldenScript>;

double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

/// Copies a model folder to `dst`, replacing its weights by `edit(weights)`.
void copy_with(const stdfs::path& src, const stdfs::path& dst, const std::function<void(TensorMap&)>& edit) {
  stdfs::create_directories(dst);
  stdfs::copy_file(src / "config.json", dst / "config.json", stdfs::copy_options::overwrite_existing);
  auto w = read_tensors(src / "diffusion_pytorch_model.safetensors");
  edit(w);
  write_tensors(dst / "diffusion_pytorch_model.safetensors", w);
}

}  // namespace

TEST_F(ModelGolden, Unet3DForwardAndGradientsMatchDiffusers) {
  double worst_y = 0, worst_grad = 0;
  for (std::string name : {"unet_a", "unet_b"}) {
    auto unet = load_unet3d(golden().dir / name);
    unet->eval();
    for (std::string c : {"even", "odd"}) {
      const std::string key = name + "/" + c;
      std::optional<torch::Tensor> cond;
      if (has(key + "/cond")) cond = g(key + "/cond");
      unet->zero_grad();
      auto y = unet->forward(g(key + "/x"), g(key + "/t"), g(key + "/ctx"), cond);
      ASSERT_EQ(y.sizes(), g(key + "/y").sizes()) << key;
      const double e = max_err(y, g(key + "/y"));
      EXPECT_LE(e, 1e-4) << key;
      worst_y = std::max(worst_y, e);
      (y * y).mean().backward();
      auto params = unet->named_parameters();
      for (const auto& [k, t] : golden().tensors) {
        const std::string prefix = key + "/grad/";
        if (k.rfind(prefix, 0) != 0) continue;
        const double eg = max_err(params[k.substr(prefix.size())].grad(), t);
        EXPECT_LE(eg, 1e-5) << k;
        worst_grad = std::max(worst_grad, eg);
      }
    }
  }
  std::printf("[parity] UNet3D fp32 max abs error: output %.3g, gradients %.3g\n", worst_y, worst_grad);
}

TEST_F(ModelGolden, AutoencoderKLMatchesDiffusers) {
  auto vae = load_autoencoder_kl(golden().dir / "vae");
  vae->eval();
  torch::NoGradGuard ng;
  auto [mean, logvar] = vae->encode_moments(g("vae/x"));
  auto decoded = vae->decode_raw(g("vae/mean"));
  const double em = max_err(mean, g("vae/mean")), el = max_err(logvar, g("vae/logvar")),
               ed = max_err(decoded, g("vae/decoded"));
  EXPECT_LE(em, 1e-4);
  EXPECT_LE(el, 1e-4);
  EXPECT_LE(ed, 1e-4);
  std::printf("[parity] AutoencoderKL fp32 max abs error: mean %.3g, logvar %.3g, decode %.3g\n", em, el, ed);

  // Behind the prep interface: scaled mean latents; slicing does not change the result; sampling
  // is seeded by the caller and differs from the mean by the posterior std.
  VaeFrameAutoencoder ae(vae, VaeFrameAutoencoder::Mode::Mean, 2, (golden().dir / "vae").string());
  auto z = ae.encode(g("vae/x"));
  EXPECT_LE(max_err(z, g("vae/mean") * 0.18215), 1e-5);
  EXPECT_EQ(ae.downsample(), 2);
  EXPECT_FALSE(ae.content_hash().empty());
  VaeFrameAutoencoder one(vae, VaeFrameAutoencoder::Mode::Mean, 1, "");
  EXPECT_LE(max_err(one.encode(g("vae/x")), z), 1e-6);  // batch size changes only the rounding
  EXPECT_LE(max_err(ae.decode(z), g("vae/decoded")), 1e-4);
  VaeFrameAutoencoder sampler(vae, VaeFrameAutoencoder::Mode::Sample, 2, "");
  auto s1 = sampler.encode(g("vae/x"), 42), s2 = sampler.encode(g("vae/x"), 42), s3 = sampler.encode(g("vae/x"), 43);
  EXPECT_TRUE(torch::equal(s1, s2));
  EXPECT_FALSE(torch::equal(s1, s3));
  EXPECT_GT(max_err(s1, z), 0.0);
  // Each frame's noise comes from its own seed only: a frame encoded alone or in another batch
  // (prep batches frames of several clips) gets the same sample, up to the batch's rounding.
  const auto x = g("vae/x");
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < x.size(0); ++i) seeds.push_back(1000 + 7 * static_cast<uint64_t>(i));
  auto batch = sampler.encode_frames(x, seeds);
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto alone = sampler.encode_frames(x.slice(0, i, i + 1), {seeds[static_cast<size_t>(i)]});
    EXPECT_LE(max_err(alone, batch.slice(0, i, i + 1)), 1e-5) << "frame " << i;
  }
  auto reversed = std::vector<uint64_t>(seeds.rbegin(), seeds.rend());
  EXPECT_GT(max_err(sampler.encode_frames(x, reversed), batch), 1e-3);
}

TEST_F(ModelGolden, ClipTextModelMatchesTransformers) {
  double worst = 0;
  for (std::string name : {"clip_a", "clip_b"}) {
    auto model = load_clip_text_model(golden().dir / name);  // clip_b has the legacy "text_model." keys
    model->eval();
    torch::NoGradGuard ng;
    auto o = model->forward(g(name + "/ids"));
    auto om = model->forward(g(name + "/ids"), g(name + "/mask"));
    // Padding rows of the masked run attend to nothing real; transformers' values there depend on
    // its mask implementation, so compare the real positions only.
    auto real = g(name + "/mask").to(torch::kBool);
    for (auto [e, what] : {std::pair{max_err(o.last_hidden_state, g(name + "/hidden")), "hidden"},
                           std::pair{max_err(o.pooled, g(name + "/pooled")), "pooled"},
                           std::pair{max_err(om.last_hidden_state.index({real}), g(name + "/hidden_masked").index({real})),
                                     "masked"}}) {
      EXPECT_LE(e, 1e-4) << name << " " << what;
      worst = std::max(worst, e);
    }
  }
  std::printf("[parity] CLIP text encoder fp32 max abs error: %.3g\n", worst);

  auto cfg = read_config_json(golden().dir / "clip_a");
  cfg["hidden_act"] = "relu";
  test::expect_error<ConfigError>([&] { ClipTextConfig::from_json(cfg, "text_encoder/config.json"); },
                                  {"text_encoder/config.json", "hidden_act", "relu"});
  auto model = load_clip_text_model(golden().dir / "clip_a");
  test::expect_error<DataError>([&] { model->forward(torch::full({1, 13}, 5, torch::kInt64)); },
                                {"13 tokens exceed max_position_embeddings 12"});
  test::expect_error<DataError>([&] { model->forward(torch::full({1, 4}, 100, torch::kInt64)); }, {"out of range"});
}

TEST(PipelineFolder, TinyDiffusersPipelineLoadsAndEncodesPromptsLikeDiffusers) {
  torch::set_num_threads(1);
  const auto dir = test::golden_dir("tests/models/make_tiny_pipeline.py");
  // Every model component of the folder diffusers saved loads strictly.
  auto unet = load_unet3d(dir / "unet");
  EXPECT_EQ(unet->config().cross_attention_dim, 32);
  auto vae = load_autoencoder_kl(dir / "vae");
  EXPECT_EQ(vae->config().latent_channels, 4);
  ClipTextEncoder te(dir / "text_encoder", dir / "tokenizer");
  EXPECT_EQ(te.max_length(), 77);
  EXPECT_EQ(te.dim(), 32);
  std::ifstream in(dir / "reference.json");
  auto ref = nlohmann::json::parse(in);
  double worst = 0;
  for (auto& [caption, rows] : ref.items()) {
    auto got = te.encode({caption})[0];
    std::vector<float> flat;
    for (auto& r : rows) for (auto& v : r) flat.push_back(v.get<float>());
    auto expected = torch::from_blob(flat.data(), {77, 32}, torch::kFloat32).clone();
    const double e = max_err(got, expected);
    EXPECT_LE(e, 1e-4) << caption;
    worst = std::max(worst, e);
  }
  std::printf("[parity] prompt embeddings vs diffusers encode_prompt (3 captions incl. Unicode): %.3g\n", worst);
}

TEST_F(ModelGolden, HalfPrecisionFilesLoadIntoFloatModels) {
  // unet_a_fp16/ is unet_a cast to float16 and saved by diffusers with variant="fp16".
  auto unet = load_unet3d(golden().dir / "unet_a_fp16");
  EXPECT_EQ(unet->parameters().front().scalar_type(), torch::kFloat32);
  auto ref = read_tensors(golden().dir / "unet_a/diffusion_pytorch_model.safetensors");
  auto ours = state_dict(*unet);
  ASSERT_EQ(ours.size(), ref.size());
  // Values are the f16 roundings of the originals.
  for (auto& [k, t] : ref) EXPECT_TRUE(torch::equal(ours.at(k), t.to(torch::kHalf).to(torch::kFloat32))) << k;
}

TEST_F(ModelGolden, LoadedModelsAreInEvalModeAndFp16VariantFoldersLoad) {
  auto unet = load_unet3d(golden().dir / "unet_a");
  EXPECT_FALSE(unet->is_training());  // as diffusers' from_pretrained: temporal-conv dropout off
  EXPECT_FALSE(load_autoencoder_kl(golden().dir / "vae")->is_training());
  EXPECT_FALSE(load_clip_text_model(golden().dir / "clip_a")->is_training());
  // A folder saved (or downloaded) with variant="fp16" has only diffusion_pytorch_model.fp16.safetensors.
  const auto variant = golden().dir / "unet_a_fp16";
  ASSERT_FALSE(stdfs::exists(variant / "diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(find_weights(variant).filename(), "diffusion_pytorch_model.fp16.safetensors");
  EXPECT_NO_THROW(load_unet3d(variant));
  // The reuse checksum covers config.json too, not only the weights.
  auto dst = test::scratch() / "variant";
  stdfs::copy(variant, dst);
  const auto before = folder_checksum(dst);
  EXPECT_EQ(before, folder_checksum(variant));
  auto cfg = read_config_json(dst);
  cfg["norm_eps"] = 1e-6;
  test::write_text(dst / "config.json", cfg.dump());
  EXPECT_NE(folder_checksum(dst), before);
}

TEST_F(ModelGolden, SaveThenLoadRoundTrips) {
  auto unet = load_unet3d(golden().dir / "unet_b");
  auto dst = test::scratch() / "unet_b_copy";
  save_unet3d(unet, dst);
  auto back = load_unet3d(dst);
  auto a = state_dict(*unet), b = state_dict(*back);
  ASSERT_EQ(a.size(), b.size());
  for (auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
  // Our config.json reads back as the same configuration.
  EXPECT_EQ(back->config().to_json(), unet->config().to_json());
}

TEST_F(ModelGolden, ModelScopeStructureHasDiffusersNamesAndShapes) {
  // The full ModelScopeT2V config has the same names at 4x the widths (checked once by hand: all
  // 1480 tensors, 1.41B parameters, identical); here its structure at a quarter width.
  std::ifstream in(golden().dir / "modelscope_structure.json");
  auto doc = nlohmann::json::parse(in);
  Unet3D unet(Unet3DConfig::from_json(doc["config"], "modelscope_structure.json"));
  std::map<std::string, std::vector<int64_t>> ours, ref;
  for (auto& p : unet->named_parameters()) ours[p.key()] = p.value().sizes().vec();
  for (auto& [k, v] : doc["shapes"].items()) ref[k] = v.get<std::vector<int64_t>>();
  EXPECT_EQ(ours.size(), ref.size());
  for (auto& [k, v] : ref) {
    auto it = ours.find(k);
    if (it == ours.end()) {
      ADD_FAILURE() << "missing " << k;
      continue;
    }
    EXPECT_EQ(it->second, v) << k;
  }
}

TEST_F(ModelGolden, ShardedCheckpointFoldersLoad) {
  // diffusers/transformers save_pretrained(max_shard_size=...) writes big models as
  // <stem>-0000K-of-0000N.safetensors plus <stem>.safetensors.index.json.
  const auto sharded = golden().dir / "unet_a_sharded";
  ASSERT_FALSE(stdfs::exists(sharded / "diffusion_pytorch_model.safetensors"));
  ASSERT_TRUE(stdfs::exists(sharded / "diffusion_pytorch_model-00002-of-00006.safetensors"));
  EXPECT_EQ(find_weights(sharded).filename(), "diffusion_pytorch_model.safetensors.index.json");
  auto a = state_dict(*load_unet3d(sharded)), b = state_dict(*load_unet3d(golden().dir / "unet_a"));
  ASSERT_EQ(a.size(), b.size());
  for (auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;

  const auto clip = golden().dir / "clip_a_sharded";
  EXPECT_EQ(find_weights(clip).filename(), "model.safetensors.index.json");
  auto c = state_dict(*load_clip_text_model(clip)), d = state_dict(*load_clip_text_model(golden().dir / "clip_a"));
  ASSERT_EQ(c.size(), d.size());
  for (auto& [k, t] : c) EXPECT_TRUE(torch::equal(t, d.at(k))) << k;
}

// diffusers names a sharded fp16 variant's index diffusion_pytorch_model.safetensors.index.fp16.json.
TEST_F(ModelGolden, ShardedFp16VariantFoldersLoad) {
  const auto folder = golden().dir / "unet_a_fp16_sharded";
  ASSERT_TRUE(stdfs::exists(folder / "diffusion_pytorch_model.safetensors.index.fp16.json"));
  EXPECT_EQ(find_weights(folder).filename(), "diffusion_pytorch_model.safetensors.index.fp16.json");
  auto a = state_dict(*load_unet3d(folder)), b = state_dict(*load_unet3d(golden().dir / "unet_a_fp16"));
  ASSERT_EQ(a.size(), b.size());
  for (auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
}

TEST_F(ModelGolden, StrictLoadListsEveryMissingUnexpectedAndMisshapedKey) {
  auto dst = test::scratch() / "bad";
  copy_with(golden().dir / "unet_a", dst, [](TensorMap& w) {
    w.erase("conv_in.bias");
    w.erase("mid_block.temp_convs.1.conv4.3.weight");
    w["conv_out.extra"] = torch::zeros({2});
    w["time_embedding.linear_1.weight"] = torch::zeros({3, 3});
  });
  test::expect_error<DataError>([&] { load_unet3d(dst); },
                                {"diffusion_pytorch_model.safetensors", "2 missing", "conv_in.bias",
                                 "mid_block.temp_convs.1.conv4.3.weight", "1 unexpected", "conv_out.extra",
                                 "1 mis-shaped", "time_embedding.linear_1.weight (file [3,3], model [128,32])"});
}

TEST_F(ModelGolden, BadFoldersAndConfigsAreRefusedByName) {
  auto root = test::scratch();
  test::expect_error<IoError>([&] { load_unet3d(root / "absent"); }, {"absent", "config.json"});
  auto nowt = root / "no_weights";
  stdfs::create_directories(nowt);
  stdfs::copy_file(golden().dir / "unet_a/config.json", nowt / "config.json");
  test::expect_error<IoError>([&] { load_unet3d(nowt); }, {"no weights in", "diffusion_pytorch_model.safetensors"});

  auto cfg = read_config_json(golden().dir / "unet_a");
  auto with = [&](const std::string& k, nlohmann::json v) {
    auto c = cfg;
    c[k] = std::move(v);
    return c;
  };
  const stdfs::path f = "unet/config.json";
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("num_attention_heads", 8), f); },
                                  {"unet/config.json", "num_attention_heads"});
  test::expect_error<ConfigError>(
      [&] { Unet3DConfig::from_json(with("down_block_types", {"CrossAttnDownBlock3D", "SpatioTemporalBlock"}), f); },
      {"down_block_types", "unknown block type SpatioTemporalBlock"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("block_out_channels", {32}), f); },
                                  {"down_block_types", "2 blocks but 1 block_out_channels"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("norm_num_groups", 7), f); },
                                  {"block_out_channels", "norm_num_groups 7"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("norm_num_groups", 0), f); },
                                  {"norm_num_groups", "must be >= 1"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("attention_head_dim", 0), f); },
                                  {"attention_head_dim", "must be >= 1"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("layers_per_block", "two"), f); },
                                  {"layers_per_block", "expected an integer"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("act_fn", "gelu"), f); }, {"act_fn"});
  test::expect_error<ConfigError>([&] { Unet3DConfig::from_json(with("_class_name", "UNet2DConditionModel"), f); },
                                  {"_class_name", "UNet2DConditionModel"});
  auto bad_json = root / "bad_json";
  stdfs::create_directories(bad_json);
  test::write_text(bad_json / "config.json", "{\"in_channels\": 4,");
  test::expect_error<IoError>([&] { load_unet3d(bad_json); }, {"bad_json/config.json", "not valid JSON"});

  auto vcfg = read_config_json(golden().dir / "vae");
  vcfg["up_block_types"] = {"UpDecoderBlock2D", "AttnUpDecoderBlock2D"};
  test::expect_error<ConfigError>([&] { AutoencoderKLConfig::from_json(vcfg, "vae/config.json"); },
                                  {"vae/config.json", "AttnUpDecoderBlock2D"});
}

TEST_F(ModelGolden, WrongInputsAreRefusedWithShapes) {
  auto unet = load_unet3d(golden().dir / "unet_a");
  test::expect_error<DataError>([&] { unet->forward(torch::zeros({1, 3, 2, 8, 8}), torch::zeros({1}), torch::zeros({1, 5, 16})); },
                                {"sample must be [B, 4, F, H, W]", "[1, 3, 2, 8, 8]"});
  test::expect_error<DataError>([&] { unet->forward(torch::zeros({1, 4, 2, 8, 8}), torch::zeros({1}), torch::zeros({1, 5, 8})); },
                                {"context must be [1, L, 16]"});
  test::expect_error<DataError>(
      [&] { unet->forward(torch::zeros({1, 4, 2, 8, 8}), torch::zeros({1}), torch::zeros({1, 5, 16}), torch::zeros({1, 6})); },
      {"timestep_cond given"});
}
