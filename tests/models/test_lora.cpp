// LoRA: targets by suffix with exclusions (the same modules PEFT wraps), a fresh adapter is the
// identity, merge == unmerged forward, unmerge restores the weights, only adapters train, PEFT
// export/import, and the round trip into diffusers (merged student folder and PEFT adapter file).
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "models/lora.hpp"
#include "models/unet3d.hpp"
#include "models/unet_motion.hpp"
#include "../golden.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::models;
namespace stdfs = std::filesystem;

namespace {

Unet3DConfig tiny() {
  Unet3DConfig c;
  c.down_block_types = {"CrossAttnDownBlock3D", "DownBlock3D"};
  c.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D"};
  c.block_out_channels = {32, 64};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.cross_attention_dim = 16;
  c.attention_head_dim = 8;
  return c;
}

struct Inputs {
  torch::Tensor x = torch::randn({2, 4, 3, 8, 8}), t = torch::tensor({10, 999}), ctx = torch::randn({2, 5, 16});
};

double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

/// Random non-zero adapters (a fresh B is zero, which would make every check trivial).
void randomize_lora(torch::nn::Module& unet) {
  torch::NoGradGuard ng;
  for (auto& p : unet.named_parameters(true))
    if (p.key().find(".lora_B.") != std::string::npos) p.value().normal_(0, 0.05);
}

/// diffusers_roundtrip.py on what our C++ wrote under `dir` (base/, lora/, student/) for these
/// inputs: the max abs errors of diffusers' merged student and of the base with our adapter file
/// injected by PEFT, against `adapted` (our output with the adapters unmerged). Not a cached
/// golden: the inputs are what the test just wrote.
std::pair<double, double> diffusers_roundtrip(const stdfs::path& dir, const torch::Tensor& x, const torch::Tensor& t,
                                              const torch::Tensor& ctx, const torch::Tensor& adapted) {
  write_tensors(dir / "inputs.safetensors", {{"x", x}, {"t", t}, {"ctx", ctx}});
  test::run_python("tests/models/diffusers_roundtrip.py",
                   {(dir / "inputs.safetensors").string(), (dir / "out.safetensors").string(), (dir / "student").string(),
                    (dir / "base").string(), (dir / "lora").string()});
  auto out = read_tensors(dir / "out.safetensors");
  return {max_err(out.at("merged"), adapted), max_err(out.at("adapter"), adapted)};
}

}  // namespace

TEST(Lora, TargetsFollowMcmListAndSkipTemporalConvs) {
  LoraConfig cfg;
  EXPECT_TRUE(lora_matches(cfg, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"));
  EXPECT_TRUE(lora_matches(cfg, "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj"));
  EXPECT_TRUE(lora_matches(cfg, "mid_block.resnets.0.conv1"));
  EXPECT_TRUE(lora_matches(cfg, "down_blocks.0.downsamplers.0.conv"));
  EXPECT_FALSE(lora_matches(cfg, "down_blocks.0.temp_convs.0.conv1"));
  EXPECT_FALSE(lora_matches(cfg, "conv_in"));
  EXPECT_FALSE(lora_matches(cfg, "time_embedding.linear_1"));
  EXPECT_FALSE(lora_matches(cfg, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.xto_q"));

  torch::manual_seed(0);
  Unet3D unet(tiny());
  cfg.rank = 4;
  cfg.alpha = 8;
  auto names = attach_lora(*unet, cfg);
  // tiny(): 2 down (1 resnet each, 1 transformer + 1 temporal transformer in the first), mid, 2 up.
  std::set<std::string> got(names.begin(), names.end());
  for (const char* n : {"transformer_in.proj_in", "transformer_in.transformer_blocks.0.attn2.to_k",
                        "down_blocks.0.resnets.0.time_emb_proj", "up_blocks.1.resnets.0.conv_shortcut",
                        "up_blocks.0.upsamplers.0.conv", "mid_block.temp_attentions.0.proj_out"})
    EXPECT_TRUE(got.count(n)) << n;
  for (const auto& n : names) EXPECT_EQ(n.find("temp_convs"), std::string::npos) << n;
  test::expect_error<ConfigError>([&] { attach_lora(*unet, cfg); }, {"already attached"});
  LoraConfig none;
  none.targets = {"nothing_named_like_this"};
  Unet3D other(tiny());
  test::expect_error<ConfigError>([&] { attach_lora(*other, none); }, {"matched no"});
  LoraConfig bad;
  bad.rank = 0;
  test::expect_error<ConfigError>([&] { attach_lora(*other, bad); }, {"lora.rank"});
}

TEST(Lora, TargetsAreTheModulesPeftWraps) {
  // make_lora_targets.py asks PEFT which modules its LoraConfig(target_modules=our list,
  // exclude_modules=our exclusions) wraps, and which MCM's own selection (main.py) wraps.
  LoraConfig cfg;
  Unet3DConfig three = tiny();  // as unet_b of the parity goldens: 3 levels, 2 layers, w-conditioning
  three.down_block_types = {"CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"};
  three.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"};
  three.block_out_channels = {16, 32, 32};
  three.layers_per_block = 2;
  three.cross_attention_dim = 24;
  three.time_cond_proj_dim = 6;
  Unet3DConfig modelscope;  // ModelScopeT2V's structure (diffusers' defaults) at a quarter width
  modelscope.block_out_channels = {64, 128, 256, 256};
  modelscope.cross_attention_dim = 256;
  const std::map<std::string, Unet3DConfig> models{{"tiny", tiny()}, {"three", three}, {"modelscope", modelscope}};
  nlohmann::json spec = {{"targets", cfg.targets}, {"exclude", cfg.exclude}, {"models", nlohmann::json::object()}};
  for (const auto& [name, c] : models) spec["models"][name] = c.to_json();
  const auto dir = test::golden_dir("tests/models/make_lora_targets.py", {spec.dump()});
  std::ifstream in(dir / "targets.json");
  const auto ref = nlohmann::json::parse(in);
  for (const auto& [name, c] : models) {
    Unet3D unet(c);
    const auto names = attach_lora(*unet, cfg);
    const std::set<std::string> ours(names.begin(), names.end());
    const auto peft = ref.at(name).at("peft").get<std::set<std::string>>();
    const auto mcm_ref = ref.at(name).at("mcm_reference").get<std::set<std::string>>();
    for (const auto& n : peft)
      if (!ours.count(n)) ADD_FAILURE() << name << ": PEFT wraps " << n << ", we do not";
    for (const auto& n : ours)
      if (!peft.count(n)) ADD_FAILURE() << name << ": we attach to " << n << ", PEFT does not";
    EXPECT_EQ(peft, mcm_ref) << name << ": PEFT with our exclusion differs from MCM's own selection";
    std::printf("[lora] %s: %zu adapted layers, identical to PEFT's and MCM's selection: %s\n", name.c_str(),
                ours.size(), ours == peft && peft == mcm_ref ? "yes" : "no");
  }
}

TEST(Lora, FreshIsIdentityMergeMatchesUnmergeRestores) {
  torch::manual_seed(1);
  Unet3D unet(tiny());
  unet->eval();
  Inputs in;
  torch::NoGradGuard ng;
  auto base = unet->forward(in.x, in.t, in.ctx);
  auto w0 = unet->named_parameters()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"].clone();
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 2;  // scale 0.5: merge must apply it
  attach_lora(*unet, cfg);
  EXPECT_TRUE(torch::equal(unet->forward(in.x, in.t, in.ctx), base));
  randomize_lora(*unet);
  auto adapted = unet->forward(in.x, in.t, in.ctx);
  EXPECT_GT(max_err(adapted, base), 1e-3);
  merge_lora(*unet);
  merge_lora(*unet);  // idempotent
  const double merged_err = max_err(unet->forward(in.x, in.t, in.ctx), adapted);
  EXPECT_LE(merged_err, 1e-5);
  unmerge_lora(*unet);
  EXPECT_LE(max_err(unet->named_parameters()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"], w0), 1e-6);
  EXPECT_LE(max_err(unet->forward(in.x, in.t, in.ctx), adapted), 1e-5);
  std::printf("[lora] merged vs unmerged forward max abs error %.3g\n", merged_err);
}

TEST(Lora, OnlyAdaptersTrain) {
  torch::manual_seed(2);
  Unet3D unet(tiny());
  LoraConfig cfg;
  cfg.rank = 2;
  auto names = attach_lora(*unet, cfg);
  auto trainable = freeze_all_but_lora(*unet);
  EXPECT_EQ(trainable.size(), 2 * names.size());
  randomize_lora(*unet);
  Inputs in;
  unet->forward(in.x, in.t, in.ctx).square().mean().backward();
  int with_grad = 0;
  for (auto& p : unet->named_parameters(true)) {
    const bool lora = p.key().find(".lora_") != std::string::npos;
    if (!lora) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
    if (lora && p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0) ++with_grad;
  }
  EXPECT_EQ(with_grad, static_cast<int>(trainable.size()));
}

TEST(Lora, ExportImportAndRefusals) {
  torch::manual_seed(3);
  Unet3D a(tiny()), b(tiny());
  LoraConfig cfg;
  cfg.rank = 3;
  cfg.alpha = 6;
  attach_lora(*a, cfg);
  attach_lora(*b, cfg);
  randomize_lora(*a);
  auto dir = test::scratch();
  save_lora(*a, cfg, dir);
  auto file = read_tensors(dir / "pytorch_lora_weights.safetensors");
  EXPECT_TRUE(file.count("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"));
  import_lora(*b, file, "f");
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (auto& p : pa)
    if (p.key().find(".lora_") != std::string::npos) {
      EXPECT_LE(max_err(p.value(), pb[p.key()]), 1e-6) << p.key();
    }
  auto broken = file;
  broken.erase("unet.mid_block.resnets.0.conv1.lora_B.weight");
  broken["unet.conv_in.lora_A.weight"] = torch::zeros({1});
  broken["unet.mid_block.resnets.1.conv2.lora_A.weight"] = torch::zeros({3, 2, 3, 3});
  merge_lora(*b);  // a merged weight holds the old product: importing over it is refused
  test::expect_error<ConfigError>([&] { import_lora(*b, file, "lora.safetensors"); }, {"merged", "unmerge_lora"});
  unmerge_lora(*b);
  test::expect_error<DataError>([&] { import_lora(*b, broken, "lora.safetensors"); },
                                {"lora.safetensors", "1 missing", "mid_block.resnets.0.conv1.lora_B.weight",
                                 "1 unexpected", "unet.conv_in.lora_A.weight", "1 mis-shaped",
                                 "mid_block.resnets.1.conv2.lora_A.weight"});
}

TEST(Lora, MergedStudentAndAdapterLoadBackIntoDiffusers) {
  torch::manual_seed(4);
  Unet3D base(tiny());
  auto dir = test::scratch();
  save_unet3d(base, dir / "base");
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 4;  // diffusers' default scale for a PEFT file without alphas; ours folds alpha/rank into B anyway
  attach_lora(*base, cfg);
  randomize_lora(*base);
  base->eval();
  Inputs in;
  torch::Tensor adapted;
  {
    torch::NoGradGuard ng;
    adapted = base->forward(in.x, in.t, in.ctx);
  }
  save_lora(*base, cfg, dir / "lora");
  // An unmerged adapter would vanish in diffusers: refused. Merged, the student is a plain UNet.
  test::expect_error<ConfigError>([&] { save_unet3d(base, dir / "student"); }, {"unmerged LoRA", "merge_lora"});
  merge_lora(*base);
  save_unet3d(base, dir / "student");
  EXPECT_EQ(load_unet3d(dir / "student")->named_parameters().size(), Unet3D(tiny())->named_parameters().size());
  const auto [e_merged, e_adapter] = diffusers_roundtrip(dir, in.x, in.t, in.ctx, adapted);
  EXPECT_LE(e_merged, 1e-4);
  EXPECT_LE(e_adapter, 1e-4);
  std::printf("[lora] diffusers round trip max abs error: merged student %.3g, PEFT adapter %.3g\n", e_merged, e_adapter);
}

TEST(Lora, UnetMotionTargetsAndDiffusersRoundTrip) {
  // AnimateDiff: MCM's list adapts the spatial layers and the motion modules' attention and
  // projections (no temporal convs to exclude), the layers PEFT wraps; the merged student loads in
  // diffusers' UNetMotionModel and the adapter file injected by PEFT gives the same output.
  UnetMotionConfig c;
  c.down_block_types = {"CrossAttnDownBlockMotion", "DownBlockMotion"};
  c.up_block_types = {"UpBlockMotion", "CrossAttnUpBlockMotion"};
  c.block_out_channels = {32, 64};
  c.layers_per_block = 1;
  c.cross_attention_dim = 48;
  c.num_attention_heads = 2;
  c.motion_num_attention_heads = 4;
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 4;
  nlohmann::json spec = {{"targets", cfg.targets}, {"exclude", cfg.exclude}, {"models", {{"motion", c.to_json()}}}};
  const auto ref = nlohmann::json::parse(std::ifstream(test::golden_dir("tests/models/make_lora_targets.py", {spec.dump()}) /
                                                       "targets.json"));
  torch::manual_seed(5);
  UnetMotion unet(c);
  auto dir = test::scratch();
  save_unet_motion(unet, dir / "base");
  const auto names = attach_lora(*unet, cfg);
  const std::set<std::string> ours(names.begin(), names.end());
  EXPECT_EQ(ours, ref["motion"]["peft"].get<std::set<std::string>>());
  EXPECT_EQ(ours, ref["motion"]["mcm_reference"].get<std::set<std::string>>());
  size_t motion = 0;
  for (const auto& n : ours) motion += n.find(".motion_modules.") != std::string::npos;
  EXPECT_GT(motion, 0u);
  std::printf("[lora] UNetMotion: %zu adapted layers (%zu in motion modules), identical to PEFT's and MCM's selection\n",
              ours.size(), motion);

  randomize_lora(*unet);
  unet->eval();
  auto x = torch::randn({2, 4, 6, 8, 8}), t = torch::tensor({10, 999}), ctx = torch::randn({2, 5, 48});
  torch::Tensor adapted;
  {
    torch::NoGradGuard ng;
    adapted = unet->forward(x, t, ctx);
  }
  save_lora(*unet, cfg, dir / "lora");
  test::expect_error<ConfigError>([&] { save_unet_motion(unet, dir / "student"); }, {"unmerged LoRA"});
  merge_lora(*unet);
  save_unet_motion(unet, dir / "student");
  const auto [e_merged, e_adapter] = diffusers_roundtrip(dir, x, t, ctx, adapted);
  EXPECT_LE(e_merged, 1e-4);
  EXPECT_LE(e_adapter, 1e-4);
  std::printf("[lora] UNetMotion diffusers round trip max abs error: merged student %.3g, PEFT adapter %.3g\n", e_merged,
              e_adapter);
}
