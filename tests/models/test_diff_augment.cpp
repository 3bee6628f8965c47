// DiffAugment against its formulas: neutral draws are the identity, each colour op, the
// translation's indexing and zero fill, the cutout square clipped at the border, gradients, and
// the draws' ranges.
#include <torch/torch.h>

#include "models/diff_augment.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::models;

namespace {
DiffAugmentDraws neutral(int64_t n) {
  auto half = torch::full({n}, 0.5);
  auto zero = torch::zeros({n}, torch::kInt64);
  return {half, half, half, zero, zero, zero, zero};
}

// n keyed streams of one seed, as a run keys them per frame.
std::vector<rng::Key> keys(uint64_t seed, int64_t n) {
  std::vector<rng::Key> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(rng::key(seed, "diff_augment_test", static_cast<uint64_t>(i), "aug"));
  return out;
}
}  // namespace

TEST(DiffAugment, NeutralDrawsWithoutCutoutAreTheIdentity) {
  auto x = torch::randn({3, 3, 8, 8});
  EXPECT_TRUE(torch::allclose(diff_augment(x, neutral(3), {0.125, 0.0}), x, 1e-6, 1e-6));
}

TEST(DiffAugment, ColourOpsFollowTheirFormulas) {
  auto x = torch::randn({2, 3, 4, 4});
  auto d = neutral(2);
  d.brightness = torch::tensor({0.9f, 0.1f});
  auto b = diff_augment(x, d, {0.125, 0.0});
  EXPECT_TRUE(torch::allclose(b, x + torch::tensor({0.4f, -0.4f}).view({2, 1, 1, 1}), 1e-6, 1e-6));
  d = neutral(2);
  d.saturation = torch::tensor({0.0f, 1.0f});
  auto s = diff_augment(x, d, {0.125, 0.0});
  auto mc = x.mean(1, true);
  EXPECT_TRUE(torch::allclose(s[0], mc[0].expand({3, 4, 4}), 1e-6, 1e-6));  // saturation 0: grey
  EXPECT_TRUE(torch::allclose(s[1], (2 * (x - mc) + mc)[1], 1e-5, 1e-6));
  d = neutral(2);
  d.contrast = torch::tensor({0.0f, 1.0f});
  auto c = diff_augment(x, d, {0.125, 0.0});
  auto m = x.mean({1, 2, 3}, true);
  EXPECT_TRUE(torch::allclose(c, (x - m) * torch::tensor({0.5f, 1.5f}).view({2, 1, 1, 1}) + m, 1e-5, 1e-6));
}

TEST(DiffAugment, TranslationIndexesLikeTheReferenceAndFillsZeros) {
  auto x = torch::arange(2 * 1 * 5 * 6, torch::kFloat32).view({2, 1, 5, 6}) + 1;
  auto d = neutral(2);
  d.shift_h = torch::tensor({1, 0});
  d.shift_w = torch::tensor({0, -2});
  auto y = diff_augment(x, d, {0.125, 0.0});
  // Image 0: out row i = in row i + 1; the last row came from past the border.
  EXPECT_TRUE(torch::equal(y[0][0].slice(0, 0, 4), x[0][0].slice(0, 1, 5)));
  EXPECT_EQ(y[0][0][4].abs().sum().item<float>(), 0.0f);
  // Image 1: out column j = in column j - 2; the first two columns are zero.
  EXPECT_TRUE(torch::equal(y[1][0].slice(1, 2, 6), x[1][0].slice(1, 0, 4)));
  EXPECT_EQ(y[1][0].slice(1, 0, 2).abs().sum().item<float>(), 0.0f);
}

TEST(DiffAugment, CutoutZeroesAClippedSquare) {
  auto x = torch::ones({2, 3, 10, 10});
  auto d = neutral(2);
  d.cutout_h = torch::tensor({5, 0});
  d.cutout_w = torch::tensor({5, 9});
  auto y = diff_augment(x, d, {0.125, 0.2});  // s = int(10 * 0.2 + 0.5) = 2
  auto zeros = (y.select(1, 0) == 0).sum({1, 2});
  EXPECT_EQ(zeros[0].item<int64_t>(), 4);  // rows 4..5 x cols 4..5
  EXPECT_EQ(y[0][0][4][4].item<float>(), 0.0f);
  EXPECT_EQ(y[0][0][6][6].item<float>(), 1.0f);
  EXPECT_EQ(zeros[1].item<int64_t>(), 2);  // rows clipped to 0..0, cols 8..9
  EXPECT_TRUE(torch::equal(y.select(1, 0), y.select(1, 2))) << "one mask for every channel";
}

TEST(DiffAugment, GradientsFlowOutsideTheCutout) {
  auto x = torch::randn({2, 3, 8, 8}, torch::requires_grad());
  auto d = draw_diff_augment(keys(3, 2), 8, 8, {});
  diff_augment(x, d, {}).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

TEST(DiffAugment, DrawsCoverTheirRanges) {
  auto d = draw_diff_augment(keys(0, 4000), 16, 24, {});
  EXPECT_EQ(d.shift_h.min().item<int64_t>(), -2);  // int(16 / 8 + 0.5)
  EXPECT_EQ(d.shift_h.max().item<int64_t>(), 2);
  EXPECT_EQ(d.shift_w.min().item<int64_t>(), -3);  // int(24 / 8 + 0.5)
  EXPECT_EQ(d.shift_w.max().item<int64_t>(), 3);
  EXPECT_EQ(d.cutout_h.max().item<int64_t>(), 15);  // s = int(3.7) = 3, odd: centres in [0, 16)
  EXPECT_EQ(d.cutout_w.max().item<int64_t>(), 23);  // s = int(5.3) = 5, odd: centres in [0, 24)
  EXPECT_GE(d.brightness.min().item<double>(), 0.0);
  EXPECT_LT(d.brightness.max().item<double>(), 1.0);
  EXPECT_THROW(diff_augment(torch::zeros({3, 3, 4}), d, {}), DataError);
}
