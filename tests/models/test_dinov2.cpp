// DINOv2 against transformers' Dinov2Model on a tiny random config (make_dinov2_golden.py): every
// layer's LayerNorm-ed output and the gradient into the pixels, on the position table's own grid
// and on a wider one (bicubic interpolation of the position embeddings); the feature-layer rule;
// bad configs.
#include <torch/torch.h>

#include "models/dinov2.hpp"
#include "models/weights.hpp"
#include "../golden.hpp"
#include "../test_util.hpp"

using namespace mcm;
namespace stdfs = std::filesystem;

namespace {
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).norm() / b.to(torch::kFloat64).norm()).item<double>();
}
}  // namespace

TEST(Dinov2, FeaturesAndPixelGradientsMatchTransformers) {
  torch::set_num_threads(1);
  const auto dir = test::golden_dir("tests/models/make_dinov2_golden.py");
  auto model = models::load_dinov2(dir / "dinov2");
  for (auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
  auto g = models::read_tensors(dir / "cases.safetensors");
  for (const std::string c : {"square", "wide"}) {
    auto pixels = g.at(c + "/pixels").clone().requires_grad_(true);
    auto feats = model->forward(pixels, {0, 1, 2, 3});
    ASSERT_EQ(feats.size(), 4u);
    torch::Tensor total = torch::zeros({});
    for (int l = 0; l < 4; ++l) {
      const auto ref = g.at(cat(c, "/feat", l));
      ASSERT_EQ(feats[static_cast<size_t>(l)].sizes(), ref.sizes()) << c << " layer " << l;
      EXPECT_LT(rel_err(feats[static_cast<size_t>(l)].detach(), ref), 1e-5) << c << " layer " << l;
      total = total + (feats[static_cast<size_t>(l)] * g.at(cat(c, "/r", l))).sum();
    }
    EXPECT_LT(rel_err(feats.back().detach(), g.at(c + "/last")), 1e-5) << c;
    total.backward();
    EXPECT_LT(rel_err(pixels.grad(), g.at(c + "/grad")), 1e-4) << c;
  }
  // Only the layers asked for, in order.
  auto two = model->forward(g.at("wide/pixels"), {1, 3});
  ASSERT_EQ(two.size(), 2u);
  EXPECT_LT(rel_err(two[0].detach(), g.at("wide/feat1")), 1e-5);
}

TEST(Dinov2, FeatureLayersAreMcmsBlocksForTwelveLayers) {
  EXPECT_EQ(models::dinov2_feature_layers(12), (std::vector<int64_t>{2, 5, 8, 11}));
  EXPECT_EQ(models::dinov2_feature_layers(4), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(models::dinov2_feature_layers(2), (std::vector<int64_t>{0, 1}));
}

TEST(Dinov2, RefusesConfigsItDoesNotImplement) {
  const auto tmp = test::scratch();
  auto write = [&](const nlohmann::json& j) { test::write_text(tmp / "config.json", j.dump()); };
  write({{"hidden_size", 32}, {"num_attention_heads", 4}, {"use_swiglu_ffn", true}});
  test::expect_error<ConfigError>([&] { models::load_dinov2(tmp); }, {"config.json", "use_swiglu_ffn"});
  write({{"hidden_size", 30}, {"num_attention_heads", 4}});
  test::expect_error<ConfigError>([&] { models::load_dinov2(tmp); }, {"hidden_size 30"});
  write({{"hidden_act", "relu"}});
  test::expect_error<ConfigError>([&] { models::load_dinov2(tmp); }, {"hidden_act \"relu\""});
}
