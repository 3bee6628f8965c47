// The frame discriminator's pieces against their formulas: the spectral-norm power iteration and
// the weight it divides by, local batch norm's groups, the hinge losses, the adaptive penalty
// weight rule, the keyed augmentation and frame draws (independent of the micro-batch split), and
// frame picking. The whole step against PyTorch is test_consistency.cpp's golden comparison.
#include <torch/torch.h>

#include "models/frame_discriminator.hpp"
#include "pipeline/distill_model.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(SpectralConv1d, PowerIterationConvergesToTheLargestSingularValue) {
  torch::manual_seed(3);
  models::SpectralConv1d conv(6, 5, 3, true);
  for (int i = 0; i < 200; ++i) conv->power_iteration();
  auto w = conv->weight_orig.detach().reshape({5, -1}).to(torch::kFloat64);
  const double sigma_max = torch::linalg_svdvals(w).max().item<double>();
  const double sigma = torch::dot(conv->weight_u.to(torch::kFloat64), torch::mv(w, conv->weight_v.to(torch::kFloat64))).item<double>();
  EXPECT_NEAR(sigma, sigma_max, 1e-5 * sigma_max);
  // One iteration by hand: v = normalize(W^T u), u = normalize(W v).
  auto u0 = conv->weight_u.clone();
  conv->power_iteration();
  auto v = torch::mv(w.t(), u0.to(torch::kFloat64));
  v = v / v.norm();
  auto u = torch::mv(w, v);
  u = u / u.norm();
  EXPECT_LT((conv->weight_u.to(torch::kFloat64) - u).abs().max().item<double>(), 1e-6);
}

TEST(SpectralConv1d, DividesTheWeightByUWvAndPadsCircularly) {
  torch::manual_seed(4);
  models::SpectralConv1d conv(2, 3, 3, true);
  auto x = torch::randn({2, 2, 5});
  auto w = conv->weight_orig.detach();
  const double sigma = torch::dot(conv->weight_u, torch::mv(w.reshape({3, -1}), conv->weight_v)).item<double>();
  auto padded = torch::cat({x.slice(2, 4), x, x.slice(2, 0, 1)}, 2);
  auto want = torch::conv1d(padded, w / sigma, conv->bias.detach());
  EXPECT_LT((conv->forward(x).detach() - want).abs().max().item<double>(), 1e-6);
  // Shorter than the padding: still wraps around (index mod L).
  models::SpectralConv1d wide(2, 3, 9, true);
  EXPECT_EQ(wide->forward(torch::randn({1, 2, 2})).sizes(), (std::vector<int64_t>{1, 3, 2}));
}

TEST(BatchNormLocal, NormalisesEachGroupOfConsecutiveFramesAlone) {
  models::BatchNormLocal bn(3, 2);
  auto x = torch::randn({4, 3, 7}) * 5 + 2;
  auto y = bn->forward(x).detach();
  for (int g = 0; g < 2; ++g) {
    auto part = y.slice(0, 2 * g, 2 * g + 2);
    EXPECT_LT(part.mean(std::vector<int64_t>{0, 2}).abs().max().item<double>(), 1e-5);
    EXPECT_LT((part.pow(2).mean(std::vector<int64_t>{0, 2}) - 1).abs().max().item<double>(), 1e-3);
  }
  // Frames of one group do not see the other group.
  auto x2 = x.clone();
  x2.slice(0, 2, 4).mul_(10);
  EXPECT_TRUE(torch::allclose(bn->forward(x2).detach().slice(0, 0, 2), y.slice(0, 0, 2)));
  // 6 frames in groups of at most 4: ceil(6 / 4) = 2 groups of 3 (as the reference's view); 7 do not split.
  EXPECT_NO_THROW(models::BatchNormLocal(3, 4)->forward(torch::randn({6, 3, 2})));
  EXPECT_THROW(models::BatchNormLocal(3, 4)->forward(torch::randn({7, 3, 2})), DataError);
}

TEST(Hinge, LossesFollowTheirFormulas) {
  auto real = torch::tensor({{2.0, 0.5}, {-1.0, 1.0}}), fake = torch::tensor({{-2.0, 0.0}, {0.5, -0.5}});
  // D: mean relu(1 - real) = (0 + 0.5 + 2 + 0) / 4; mean relu(1 + fake) = (0 + 1 + 1.5 + 0.5) / 4.
  EXPECT_NEAR(models::hinge_d_loss(real, fake).item<double>(), 2.5 / 4 + 3.0 / 4, 1e-7);
  EXPECT_NEAR(models::hinge_g_loss(fake).item<double>(), 0.5, 1e-7);
}

TEST(GradientPenalty, WeightRisesByTheFactorAtMostOncePerInterval) {
  models::GpWeightRule rule{5.0, 100.0, 500};
  int64_t last = -1;
  double w = 1e-5;
  w = rule.next(w, 50, 10, last);
  EXPECT_EQ(w, 1e-5);
  w = rule.next(w, 150, 20, last);
  EXPECT_DOUBLE_EQ(w, 5e-5);
  EXPECT_EQ(last, 20);
  w = rule.next(w, 150, 519, last);  // 499 steps later: not yet
  EXPECT_DOUBLE_EQ(w, 5e-5);
  w = rule.next(w, 150, 520, last);
  EXPECT_DOUBLE_EQ(w, 25e-5);
}

TEST(GradientPenalty, HasAGraphThatTrainsTheHeads) {
  torch::manual_seed(5);
  models::FrameDiscriminator d(std::vector<int64_t>{4}, 3, 4, 8);
  std::vector<torch::Tensor> real{torch::randn({2, 4, 6})}, fake{torch::randn({2, 4, 6})};
  auto gp = models::gradient_penalty(d, real, fake, torch::randn({2, 3}), torch::rand({2}));
  EXPECT_TRUE(gp.requires_grad());
  gp.backward();
  double total = 0;
  for (auto& p : d->parameters()) total += p.grad().defined() ? p.grad().abs().sum().item<double>() : 0.0;
  EXPECT_GT(total, 0);
}

TEST(AdvDraws, DependOnlyOnTheSampleIdsAndStayInRange) {
  models::DiffAugmentOptions aug;
  auto all = stages::draw_adv({7, 8, 9, 10}, 2, 8, 16, 16, aug, 42);
  auto tail = stages::draw_adv({9, 10}, 2, 8, 16, 16, aug, 42);
  EXPECT_TRUE(torch::equal(all.g_frames.slice(0, 2), tail.g_frames));
  EXPECT_TRUE(torch::equal(all.d_frames.slice(0, 2), tail.d_frames));
  EXPECT_TRUE(torch::equal(all.gp_alpha.slice(0, 4), tail.gp_alpha));
  EXPECT_TRUE(torch::equal(all.d_real_aug.shift_w.slice(0, 4), tail.d_real_aug.shift_w));
  EXPECT_FALSE(torch::equal(all.g_frames, all.d_frames)) << "the discriminator pass judges fresh frames";
  std::vector<int64_t> ids(1000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  auto many = stages::draw_adv(ids, 2, 8, 16, 16, aug, 1);
  EXPECT_EQ(many.g_frames.min().item<int64_t>(), 0);
  EXPECT_EQ(many.g_frames.max().item<int64_t>(), 7);
  EXPECT_EQ(many.g_aug.shift_h.min().item<int64_t>(), -2);  // int(16 / 8 + 0.5)
  EXPECT_EQ(many.g_aug.shift_h.max().item<int64_t>(), 2);
  EXPECT_EQ(many.g_aug.cutout_w.max().item<int64_t>(), 16 - 1);  // s = int(3.7) = 3 (odd): centres 0..15
  EXPECT_GE(many.gp_alpha.min().item<double>(), 0.0);
  EXPECT_LT(many.gp_alpha.max().item<double>(), 1.0);
}

TEST(PickFrames, TakesTheChosenFramesSampleMajor) {
  auto x = torch::arange(2 * 1 * 4 * 1 * 1, torch::kFloat32).view({2, 1, 4, 1, 1});
  auto f = stages::pick_frames(x, torch::tensor({{3, 0}, {1, 1}}, torch::kInt64));
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{4, 1, 1, 1}));
  EXPECT_TRUE(torch::equal(f.flatten(), torch::tensor({3.0f, 0.0f, 5.0f, 5.0f})));
}
