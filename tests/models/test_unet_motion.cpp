// Parity of our UNetMotionModel (AnimateDiff) with diffusers: make_motion_golden.py beside this
// file saves a tiny SD1.5-style UNet, a MotionAdapter, diffusers' UNetMotionModel.from_unet2d of
// them, and inputs/outputs/gradients; we load both ways and compare. Also SD1.5 + v1-5-2's
// structure (names and shapes) and the refusals.
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/unet_motion.hpp"
#include "models/weights.hpp"
#include "golden_tensors.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::models;
namespace stdfs = std::filesystem;

namespace {
struct MotionGoldenScript {
  static constexpr const char* path = "tests/models/make_motion_golden.py";
};
using MotionGolden = test::GoldenTest<MotionGoldenScript>;

double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST_F(MotionGolden, ForwardAndGradientsMatchDiffusers) {
  double worst_y = 0, worst_grad = 0;
  struct Case {
    std::string golden;
    std::function<UnetMotion()> load;
  };
  const std::vector<Case> models{
      {"unet_motion", [] { return load_unet_motion(golden().dir / "unet", golden().dir / "motion_adapter"); }},  // from_unet2d
      {"unet_motion", [] { return load_unet_motion(golden().dir / "unet_motion"); }},                   // a saved folder
      {"unet_motion_mid", [] { return load_unet_motion(golden().dir / "unet_motion_mid"); }}};
  for (const auto& m : models) {
    auto unet = m.load();
    for (std::string c : {"even", "odd"}) {
      const std::string key = m.golden + "/" + c;
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
      int grads = 0;
      for (const auto& [k, t] : golden().tensors) {
        const std::string prefix = key + "/grad/";
        if (k.rfind(prefix, 0) != 0) continue;
        const double eg = max_err(params[k.substr(prefix.size())].grad(), t);
        EXPECT_LE(eg, 1e-5) << k;
        worst_grad = std::max(worst_grad, eg);
        ++grads;
      }
      EXPECT_EQ(grads, 8) << key;
    }
  }
  std::printf("[parity] UNetMotion fp32 max abs error: output %.3g, gradients %.3g\n", worst_y, worst_grad);
}

TEST_F(MotionGolden, SavedFolderIsDiffusersOwn) {
  // from_unet2d in C++ gives exactly diffusers' UNetMotionModel: same config, same tensors; our
  // saved folder holds the same tensors and reads back as the same model.
  auto ours = load_unet_motion(golden().dir / "unet", golden().dir / "motion_adapter");
  auto ref = read_tensors(golden().dir / "unet_motion" / "diffusion_pytorch_model.safetensors");
  auto sd = state_dict(*ours);
  ASSERT_EQ(sd.size(), ref.size());
  for (auto& [k, t] : ref) EXPECT_TRUE(torch::equal(sd.at(k), t)) << k;
  const auto dst = test::scratch() / "saved";
  save_unet_motion(ours, dst);
  for (auto& [k, t] : read_tensors(dst / "diffusion_pytorch_model.safetensors")) EXPECT_TRUE(torch::equal(ref.at(k), t)) << k;
  auto theirs = UnetMotionConfig::from_json(read_config_json(golden().dir / "unet_motion"), "unet_motion/config.json");
  EXPECT_EQ(load_unet_motion(dst)->config().to_json(), theirs.to_json());
  EXPECT_EQ(ours->config().to_json(), theirs.to_json());
}

TEST_F(MotionGolden, Sd15WithAdapterV152HasDiffusersNamesAndShapes) {
  // SD1.5 + v1-5-2 (names and shapes from diffusers on the meta device) at a quarter of the widths;
  // MCM_TEST_FULL_SD15=1 builds the full 1.31B-parameter model instead (5 GB, about a minute).
  std::ifstream in(golden().dir / "sd15_structure.json");
  auto doc = nlohmann::json::parse(in);
  const char* full = std::getenv("MCM_TEST_FULL_SD15");
  const auto& q = doc[full && std::string(full) == "1" ? "full" : "quarter"];
  UnetMotion unet(UnetMotionConfig::from_unet2d(q["unet_config"], "sd15/unet/config.json", q["adapter_config"],
                                                "v1-5-2/config.json"));
  std::map<std::string, std::vector<int64_t>> ours, ref;
  for (auto& [k, t] : state_dict(*unet)) ours[k] = t.sizes().vec();
  for (auto& [k, v] : q["shapes"].items()) ref[k] = v.get<std::vector<int64_t>>();
  EXPECT_EQ(ours.size(), ref.size());
  for (auto& [k, v] : ref) {
    auto it = ours.find(k);
    if (it == ours.end()) {
      ADD_FAILURE() << "missing " << k;
      continue;
    }
    EXPECT_EQ(it->second, v) << k;
  }
  int64_t params = 0;
  for (auto& p : unet->parameters()) params += p.numel();
  EXPECT_EQ(params, q["parameters"].get<int64_t>());
  EXPECT_EQ(doc["full"]["keys"].get<int64_t>(), 1253);
  std::printf("[structure] SD1.5 + v1-5-2 (%s): %zu keys, %lld parameters, as diffusers\n",
              q == doc["full"] ? "full" : "quarter widths", ours.size(), static_cast<long long>(params));
}

TEST_F(MotionGolden, RefusesWhatItCannotBuildFaithfully) {
  auto unet = read_config_json(golden().dir / "unet"), adapter = read_config_json(golden().dir / "motion_adapter");
  auto with = [](nlohmann::json j, const std::string& k, nlohmann::json v) {
    j[k] = std::move(v);
    return j;
  };
  test::expect_error<ConfigError>(
      [&] { UnetMotionConfig::from_unet2d(unet, "u/config.json", with(adapter, "motion_layers_per_block", 2), "a/config.json"); },
      {"a/config.json", "motion_layers_per_block", "u/config.json"});
  test::expect_error<ConfigError>(
      [&] { UnetMotionConfig::from_unet2d(with(unet, "freq_shift", 1), "u/config.json", adapter, "a/config.json"); },
      {"freq_shift"});
  test::expect_error<ConfigError>(
      [&] { UnetMotionConfig::from_unet2d(unet, "u/config.json", with(adapter, "block_out_channels", {32, 128}), "a/config.json"); },
      {"block_out_channels", "widths"});
  auto saved = read_config_json(golden().dir / "unet_motion");
  test::expect_error<ConfigError>(
      [&] { UnetMotionConfig::from_json(with(saved, "num_attention_heads", {2, 4}), "m/config.json"); },
      {"m/config.json", "num_attention_heads", "per-block"});
  test::expect_error<ConfigError>(
      [&] { UnetMotionConfig::from_json(with(saved, "_class_name", "UNet3DConditionModel"), "m/config.json"); },
      {"expected UNetMotionModel"});
  // More frames than the positional table: a clear error, not a shape mismatch deep inside.
  auto m = load_unet_motion(golden().dir / "unet_motion_mid");  // motion_max_seq_length 16
  torch::NoGradGuard ng;
  test::expect_error<DataError>([&] { m->forward(torch::randn({1, 4, 17, 8, 8}), torch::tensor({5}), torch::randn({1, 3, 48})); },
                                {"17 frames", "motion_max_seq_length"});
  // A UNet folder and an adapter folder sharing a key would be ambiguous.
  const auto dup = test::scratch() / "dup";
  stdfs::create_directories(dup);
  stdfs::copy_file(golden().dir / "motion_adapter" / "config.json", dup / "config.json");
  auto w = read_tensors(golden().dir / "motion_adapter" / "diffusion_pytorch_model.safetensors");
  w["conv_in.weight"] = torch::zeros({32, 4, 3, 3});
  write_tensors(dup / "diffusion_pytorch_model.safetensors", w);
  test::expect_error<DataError>([&] { load_unet_motion(golden().dir / "unet", dup); }, {"conv_in.weight", "also in the UNet"});
}
