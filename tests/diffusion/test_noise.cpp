// Noise tensors from rng keys: the same numbers for any thread count, rank split, dtype path or
// device, equal to the core streams, and pinned.
#include <torch/torch.h>

#include <vector>

#include "diffusion/noise.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::diffusion;

TEST(Noise, RandnIsTheKeysNormalSequence) {
  const auto k = rng::key(453645634, "distill", 3, "noise");
  auto n = randn(k, {2, 3, 5});
  EXPECT_EQ(n.scalar_type(), torch::kFloat32);
  EXPECT_EQ(n.sizes(), (std::vector<int64_t>{2, 3, 5}));
  std::vector<float> want(30);
  rng::fill_normal(k, 0, want.data(), want.size());
  EXPECT_TRUE(torch::equal(n.flatten(), torch::from_blob(want.data(), {30}, torch::kFloat32)));
  auto d = randn(k, {2, 3, 5}, torch::kFloat64);
  std::vector<double> wd(30);
  rng::fill_normal(k, 0, wd.data(), wd.size());
  EXPECT_TRUE(torch::equal(d.flatten(), torch::from_blob(wd.data(), {30}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(d.to(torch::kFloat32), n));
  // Reduced precision is the float32 draw, cast.
  EXPECT_TRUE(torch::equal(randn(k, {2, 3, 5}, torch::kHalf), n.to(torch::kHalf)));
  EXPECT_TRUE(torch::equal(randn(k, {2, 3, 5}, torch::kBFloat16), n.to(torch::kBFloat16)));
  EXPECT_FALSE(torch::equal(randn(rng::with_index(k, 4), {2, 3, 5}), n));
  test::expect_error<DataError>([&] { randn(k, {2}, torch::kInt64); }, {"randn with dtype Long", "floating"});
  EXPECT_EQ(randn(k, {0, 4}).numel(), 0);
}

TEST(Noise, IndependentOfThreadCount) {
  const auto k = rng::key(1, "sample", 0, "latents");
  const int saved = torch::get_num_threads();
  torch::set_num_threads(1);
  auto one = randn(k, {3, 4, 16, 32, 32});  // 196608 elements: many parallel chunks
  torch::set_num_threads(4);
  auto four = randn(k, {3, 4, 16, 32, 32});
  torch::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one, four));
  EXPECT_NEAR(one.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(one.std().item<double>(), 1.0, 0.01);
}

TEST(Noise, PerSampleKeysMakeBatchesIndependentOfTheRankSplit) {
  // Global batch of 4 samples, keyed by the global sample index: one rank drawing all four or two
  // ranks drawing two each give the same noise per sample.
  auto keys = [](uint64_t first, uint64_t n) {
    std::vector<rng::Key> v;
    for (uint64_t i = first; i < first + n; ++i) v.push_back(rng::key(453645634, "distill", i, "noise"));
    return v;
  };
  auto all = randn_per_sample(keys(0, 4), {4, 2, 3, 3});
  EXPECT_EQ(all.sizes(), (std::vector<int64_t>{4, 4, 2, 3, 3}));
  auto r0 = randn_per_sample(keys(0, 2), {4, 2, 3, 3}), r1 = randn_per_sample(keys(2, 2), {4, 2, 3, 3});
  EXPECT_TRUE(torch::equal(torch::cat({r0, r1}), all));
  for (int64_t b = 0; b < 4; ++b) EXPECT_TRUE(torch::equal(all[b], randn(keys(b, 1)[0], {4, 2, 3, 3})));
  EXPECT_FALSE(torch::equal(all[0], all[1]));
  EXPECT_EQ(randn_per_sample({}, {2}).sizes(), (std::vector<int64_t>{0, 2}));
}

TEST(Noise, PinnedValues) {
  // Changing the rng scheme or the fill order changes every noise tensor: make it deliberate.
  auto n = randn(rng::key(453645634, "distill", 0, "noise"), {4}, torch::kFloat64);
  const double want[] = {-1.2483169803942731, 0.022424702049848356, -0.094631018724804172, 0.73013905047546501};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(n[i].item<double>(), want[i], 1e-14) << i;
}

TEST(Noise, SameOnCpuAndGpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto k = rng::key(453645634, "distill", 9, "noise");
  auto cpu = randn(k, {2, 4, 16, 32, 32});
  auto gpu = randn(k, {2, 4, 16, 32, 32}, torch::TensorOptions().device(torch::kCUDA));
  EXPECT_EQ(gpu.device().type(), torch::kCUDA);
  EXPECT_TRUE(torch::equal(gpu.cpu(), cpu));
  auto g16 = randn(k, {2, 4, 16, 32, 32}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kHalf));
  EXPECT_TRUE(torch::equal(g16.cpu(), cpu.to(torch::kHalf)));
}
