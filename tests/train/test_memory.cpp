// The CPU memory meter and the pass fit that `mcm distill --dry-run` estimates activations with
// (Note [activation estimate] in pipeline/distill_plan.cpp).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.hpp"
#include "models/lora.hpp"
#include "models/unet3d.hpp"
#include "train/memory.hpp"

using namespace mcm;

namespace {

constexpr int64_t kMiB = 1024 * 1024;

TEST(Memory, PeakCountsWhatIsLiveAtOnce) {
  torch::Tensor kept;
  const int64_t peak = train::peak_cpu_tensor_bytes([&] {
    { auto a = torch::empty({kMiB / 4}, torch::kFloat32); }  // 1 MiB, freed at once
    kept = torch::empty({kMiB / 2}, torch::kFloat32);         // 2 MiB, outlives the measurement
    auto b = torch::empty({kMiB / 4}, torch::kFloat32);       // 1 MiB beside it
  });
  EXPECT_EQ(peak, 3 * kMiB);
  kept = torch::Tensor();  // freed after the meter is gone: balances without it
  // The next measurement starts from zero, and storage allocated before it does not count.
  auto before = torch::ones({kMiB / 4});
  EXPECT_EQ(train::peak_cpu_tensor_bytes([&] { auto c = torch::empty_like(before); }), kMiB);
}

TEST(Memory, KernelsThatAllocateRawBuffersRun) {
  // addmm and conv ask the CPU allocator for raw buffers, which must be simple (data == context).
  auto a = torch::randn({64, 64}), b = torch::randn({64, 64}), bias = torch::randn({64});
  auto x = torch::randn({2, 3, 16, 16}), w = torch::randn({8, 3, 3, 3});
  torch::Tensor y, z;
  const int64_t peak = train::peak_cpu_tensor_bytes([&] {
    y = torch::addmm(bias, a, b);
    z = torch::conv2d(x, w);
  });
  EXPECT_GE(peak, y.nbytes() + z.nbytes());
  EXPECT_TRUE(torch::allclose(y, torch::addmm(bias, a, b)));
}

TEST(Memory, OneMeasurementAtATime) {
  EXPECT_THROW(train::peak_cpu_tensor_bytes([] { train::peak_cpu_tensor_bytes([] {}); }), Error);
  EXPECT_EQ(train::peak_cpu_tensor_bytes([] { auto t = torch::empty({256}); }), 1024);  // usable again
}

TEST(Memory, CudaAutocastPolicyOnCpuKeepsNormsInFloat32) {
  auto x = torch::randn({2, 8, 4, 4}), w = torch::randn({8, 8, 1, 1});
  auto norm_dtype = [&] {
    train::AutocastGuard ag(torch::kCPU, "bf16");
    auto h = torch::conv2d(x, w);  // bf16 under autocast, on either device
    EXPECT_EQ(h.scalar_type(), torch::kBFloat16);
    return std::make_pair(torch::group_norm(h, 4).scalar_type(), torch::softmax(h, -1).scalar_type());
  };
  EXPECT_EQ(norm_dtype(), std::make_pair(torch::kBFloat16, torch::kBFloat16));  // CPU autocast's own lists
  {
    train::CudaAutocastPolicyOnCpu policy;
    EXPECT_EQ(norm_dtype(), std::make_pair(torch::kFloat32, torch::kFloat32));  // CUDA's: float32
  }
  EXPECT_EQ(norm_dtype(), std::make_pair(torch::kBFloat16, torch::kBFloat16));  // unregistered again
}

TEST(Memory, PassFitRecoversALinearModel) {
  const auto fit = train::PassFit::measure([](int64_t n, int64_t s) { return 100.0 + n * (10.0 + 3.0 * s * s); }, 4);
  EXPECT_DOUBLE_EQ(fit.once, 100);
  EXPECT_DOUBLE_EQ(fit.per_item, 10);
  EXPECT_DOUBLE_EQ(fit.per_area, 3);
  EXPECT_DOUBLE_EQ(fit.at(3, 64), 100 + 3 * (10 + 3 * 64.0 * 64.0));
}

// The estimate's premise, on ModelScope's structure at a quarter width with MCM's LoRA: fitted
// through small passes, the student's forward and backward predicts a direct measurement at 4x
// the largest fitted area and a larger batch. fp32 and bf16 autocast.
TEST(Memory, UnetPassFitPredictsALargerPass) {
  torch::manual_seed(0);
  models::Unet3DConfig c;
  c.block_out_channels = {64, 128, 256, 256};
  c.cross_attention_dim = 64;
  models::Unet3D unet(c);
  unet->eval();
  models::LoraConfig lc;
  lc.rank = 8;
  lc.alpha = 8;
  models::attach_lora(*unet, lc);
  models::freeze_all_but_lora(*unet);
  train::CudaAutocastPolicyOnCpu cuda_policy;
  for (const std::string precision : {"fp32", "bf16"}) {
    auto pass = [&](int64_t n, int64_t s) {
      auto x = torch::randn({n, 4, 2, s, s});
      auto t = torch::full({n}, 500, torch::kLong);
      auto ctx = torch::randn({n, 77, 64});
      for (auto& p : unet->parameters())
        if (p.requires_grad()) p.mutable_grad() = torch::zeros_like(p);
      return static_cast<double>(train::peak_cpu_tensor_bytes([&] {
        torch::Tensor loss;
        {
          train::AutocastGuard ag(torch::kCPU, precision);
          loss = unet->forward(x, t, ctx).to(torch::kFloat32).square().mean();
        }
        loss.backward();
      }));
    };
    const auto fit = train::PassFit::measure(pass, 8);
    const double direct = pass(3, 32), predicted = fit.at(3, 32);
    EXPECT_NEAR(predicted / direct, 1.0, 0.03) << precision << ": predicted " << predicted << ", measured " << direct;
    EXPECT_GT(fit.per_area, 0) << precision;
    std::printf("%s: predicted %.1f MiB, measured %.1f MiB (once %.1f MiB, per clip %.2f MiB + %.4f MiB per latent pixel)\n",
                precision.c_str(), predicted / kMiB, direct / kMiB, fit.once / kMiB, fit.per_item / kMiB, fit.per_area / kMiB);
  }
}

}  // namespace
