// Per-sample timesteps (Note [per-sample timesteps]) against diffusers and the LCM/MCM training
// code: the "ps/" tensors of make_golden.py beside this file.
#include <torch/torch.h>

#include "diffusion/samplers.hpp"
#include "diffusion/solver.hpp"
#include "io/safetensors.hpp"
#include "golden_file.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::diffusion;

namespace {
double max_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// The same golden file as test_samplers.cpp.
using PerSample = test::DiffusionGolden;
}  // namespace

TEST_F(PerSample, AddNoiseMatchesDdpmSchedulerWithTimestepTensor) {
  const auto t = get("ps/t");
  for (auto [sched, rescale] : {std::pair{"scaled_linear", false}, {"linear", false}, {"scaled_linear", true}}) {
    NoiseSchedule ns({1000, 0.00085, 0.012, sched, rescale});
    const std::string name = std::string("ps/add_noise/") + sched + "/" + std::to_string(int(rescale));
    auto x0 = get(name + "/x0"), eps = get(name + "/eps");
    auto xt = ns.add_noise(x0, eps, t);
    EXPECT_LE(max_err(xt, get(name + "/out")), 1e-6) << name;
    // float16 as diffusers: the schedule cast to the sample dtype first.
    auto xt16 = ns.add_noise(x0.to(torch::kHalf), eps.to(torch::kHalf), t);
    EXPECT_EQ(xt16.scalar_type(), torch::kHalf);
    EXPECT_LE(max_err(xt16, get(name + "/out_f16")), 1e-3) << name;
    // Each sample equals the scalar form at its own timestep, bit for bit.
    for (int64_t b = 0; b < t.size(0); ++b)
      ASSERT_TRUE(torch::equal(xt[b], ns.add_noise(x0[b], eps[b], t[b].item<int64_t>()))) << name << " sample " << b;
    if (rescale) {
      EXPECT_TRUE(torch::equal(xt[-1], eps[-1]));  // zero terminal SNR: x_999 = eps exactly
    }
  }
}

TEST_F(PerSample, BoundaryScalingsMatchLcmSchedulerWithTimestepTensor) {
  const auto t = get("ps/t");
  for (double scaling : {4.0, 10.0}) {
    const std::string name = "ps/scalings/" + std::string(scaling == 4.0 ? "4.0" : "10.0");
    auto [c_skip, c_out] = boundary_scalings(t, scaling);
    EXPECT_EQ(c_skip.scalar_type(), torch::kFloat32);
    EXPECT_EQ(c_skip.sizes(), t.sizes());
    EXPECT_LE(max_err(c_skip, get(name + "/c_skip")), 1e-7) << name;
    EXPECT_LE(max_err(c_out, get(name + "/c_out")), 1e-7) << name;
    for (int64_t b = 0; b < t.size(0); ++b) {
      auto [s1, o1] = boundary_scalings(t[b].item<int64_t>(), scaling);
      EXPECT_TRUE(torch::equal(s1, c_skip[b]) && torch::equal(o1, c_out[b])) << name << " sample " << b;
    }
  }
}

TEST_F(PerSample, DdimStepMatchesDdimSchedulerSampleBySample) {
  NoiseSchedule ns;
  const auto t = get("ps/ddim/t");
  double worst = 0;
  for (std::string pred : {"epsilon", "v_prediction", "sample"})
    for (bool one : {true, false}) {
      const std::string name = "ps/ddim/" + pred + "/" + std::to_string(int(one));
      auto r = ddim_step(ns, get(name + "/model_out"), get(name + "/x"), t, t - 20, parse_prediction(pred), one);
      double e = std::max(max_err(r.prev_sample, get(name + "/prev")), max_err(r.denoised, get(name + "/x0")));
      worst = std::max(worst, e);
      EXPECT_LE(e, 1e-6) << name;
    }
  std::printf("per-sample DDIM step worst max abs error vs DDIMScheduler: %.3g\n", worst);
}

TEST_F(PerSample, SolverMatchesTheLcmMcmDdimSolver) {
  NoiseSchedule ns;
  auto ts = solver_timesteps(get("ps/solver/index"), 1000, 50);
  EXPECT_TRUE(torch::equal(ts.t, get("ps/solver/t")));
  EXPECT_TRUE(torch::equal(ts.s, get("ps/solver/s")));
  auto x0 = get("ps/solver/x0"), eps = get("ps/solver/eps"), want = get("ps/solver/x_prev");
  auto x_prev = ddim_solver_step(ns, x0, eps, ts.s);
  EXPECT_EQ(x_prev.scalar_type(), torch::kFloat32);
  // The reference keeps its tables in float64: agreement to float32 rounding.
  double e = max_err(x_prev, want);
  EXPECT_LE(e, 2e-6);
  std::printf("DDIM solver max abs error vs the LCM/MCM DDIMSolver (float64): %.3g\n", e);
  // The reference's s = 0 is abar_0, which is diffusers' s = -1 without set_alpha_to_one.
  EXPECT_TRUE(torch::equal(x_prev, ddim_solver_step(ns, x0, eps, ts.t - 20, /*set_alpha_to_one=*/false)));
  // With set_alpha_to_one, s = -1 lands exactly on x0.
  auto s = torch::full({x0.size(0)}, -1, torch::kInt64);
  EXPECT_TRUE(torch::equal(ddim_solver_step(ns, x0, eps, s, true), x0));
}

TEST_F(PerSample, PredictX0MatchesTheTrainingCode) {
  NoiseSchedule ns;
  const auto t = get("ps/t");
  auto x = get("ps/x0/x"), m = get("ps/x0/model_out");
  for (std::string pred : {"epsilon", "v_prediction"}) {
    auto x0 = ns.predict_x0(m, x, t, parse_prediction(pred));
    EXPECT_LE(max_err(x0, get("ps/x0/" + pred)), 1e-6) << pred;
    for (int64_t b = 0; b < t.size(0); ++b)
      ASSERT_TRUE(torch::equal(x0[b], ns.predict_x0(m[b], x[b], t[b].item<int64_t>(), parse_prediction(pred)))) << pred << b;
  }
  // eps from x0-prediction and v-prediction reproduces the noise used to make x_t.
  auto x0 = torch::randn({3, 2, 4}), eps = torch::randn({3, 2, 4});
  auto tt = torch::tensor({5, 400, 990});
  auto xt = ns.add_noise(x0, eps, tt);
  EXPECT_LE(max_err(ns.predict_eps(x0, xt, tt, Prediction::sample), eps), 1e-4);
  auto a = per_sample(ns.abar(tt), xt);
  auto v = a.sqrt() * eps - (1 - a).sqrt() * x0;
  EXPECT_LE(max_err(ns.predict_eps(v, xt, tt, Prediction::v_prediction), eps), 1e-5);
  EXPECT_LE(max_err(ns.predict_x0(v, xt, tt, Prediction::v_prediction), x0), 1e-5);
}

TEST(PerSampleApi, BroadcastDtypesAndErrors) {
  NoiseSchedule ns;
  auto x = torch::randn({2, 3, 4});
  // A 0-dim timestep is the scalar form.
  auto t0 = torch::scalar_tensor(300, torch::kInt64);
  EXPECT_TRUE(torch::equal(ns.add_noise(x, x, t0), ns.add_noise(x, x, 300)));
  EXPECT_TRUE(torch::equal(ns.predict_x0(x, x, t0, Prediction::epsilon), ns.predict_x0(x, x, 300, Prediction::epsilon)));
  // int32 timesteps work; abar keeps t's shape.
  EXPECT_EQ(ns.abar(torch::tensor({1, 2}, torch::kInt32)).sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(per_sample(torch::ones({2}), x).sizes(), (std::vector<int64_t>{2, 1, 1}));
  // dtypes: add_noise keeps x0's; predict_x0 per sample computes in float32 (as the training code).
  auto h = x.to(torch::kHalf);
  auto tb = torch::tensor({10, 900});
  EXPECT_EQ(ns.add_noise(h, h, tb).scalar_type(), torch::kHalf);
  EXPECT_EQ(ns.predict_x0(h, h, tb, Prediction::epsilon).scalar_type(), torch::kFloat32);
  EXPECT_EQ(ns.predict_x0(h, h, 10, Prediction::epsilon).scalar_type(), torch::kHalf);
  // abar_prev: t < 0 is the final alpha.
  auto ap = ns.abar_prev(torch::tensor({-1, 0, 999}), true);
  EXPECT_EQ(ap[0].item<float>(), 1.0f);
  EXPECT_EQ(ap[1].item<float>(), ns.alphas_cumprod()[0].item<float>());
  EXPECT_EQ(ns.abar_prev(torch::tensor({-1}), false)[0].item<float>(), ns.alphas_cumprod()[0].item<float>());
  test::expect_error<DataError>([&] { ns.add_noise(x, x, torch::tensor({0, 1000})); }, {"timesteps in [0, 1000]", "outside [0, 1000)"});
  test::expect_error<DataError>([&] { ns.abar(torch::tensor({-1})); }, {"outside [0, 1000)"});
  test::expect_error<DataError>([&] { ns.abar_prev(torch::tensor({1000}), true); }, {"outside"});
  test::expect_error<DataError>([&] { ns.add_noise(x, x, torch::tensor({0.5f, 1.0f})); }, {"timesteps of dtype Float", "integers"});
  test::expect_error<DataError>([&] { ns.add_noise(x, x, torch::tensor({1, 2, 3})); }, {"shape [3]", "shape [2, 3, 4]", "one value per sample"});
  test::expect_error<DataError>([&] { solver_timesteps(torch::tensor({50}), 1000, 50); }, {"outside [0, 50)"});
  // The solver grid: MCM's 19, 39, ..., 999 with s = max(t - 20, 0).
  auto st = solver_timesteps(torch::tensor({0, 1, 49}), 1000, 50);
  EXPECT_TRUE(torch::equal(st.t, torch::tensor({19, 39, 999})));
  EXPECT_TRUE(torch::equal(st.s, torch::tensor({0, 19, 979})));
}

TEST(PerSampleApi, LcmDefaultsFollowMcm) {
  // MCM samples and distils with timestep scaling 4 (diffusers' LCMScheduler default is 10).
  EXPECT_EQ(LcmOptions{}.timestep_scaling, 4.0);
  NoiseSchedule ns;
  LcmSampler s(ns);
  s.set_timesteps(1);
  auto x = torch::randn({1, 4}), out = torch::randn({1, 4});
  auto r = s.step(out, 0, x, torch::Tensor());
  auto [c_skip, c_out] = boundary_scalings(999, 4.0);
  EXPECT_TRUE(torch::equal(r.denoised, c_out * ns.predict_x0(out, x, 999, Prediction::epsilon) + c_skip * x));
}

TEST(PerSampleApi, DeviceTensors_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  NoiseSchedule ns;
  auto x0 = torch::randn({4, 4, 2, 3, 3}), eps = torch::randn({4, 4, 2, 3, 3});
  auto t = torch::tensor({0, 19, 500, 999});
  auto dev = torch::Device(torch::kCUDA);
  auto cpu = ns.add_noise(x0, eps, t);
  EXPECT_LE(max_err(ns.add_noise(x0.to(dev), eps.to(dev), t.to(dev)).cpu(), cpu), 1e-6);
  EXPECT_LE(max_err(ns.add_noise(x0.to(dev), eps.to(dev), t).cpu(), cpu), 1e-6);  // CPU timesteps, GPU data
  auto r = ddim_step(ns, eps.to(dev), cpu.to(dev), t.to(dev), (t - 20).to(dev));
  auto rc = ddim_step(ns, eps, cpu, t, t - 20);
  EXPECT_LE(max_err(r.prev_sample.cpu(), rc.prev_sample), 1e-5);
  auto [c_skip, c_out] = boundary_scalings(t.to(dev), 4.0);
  EXPECT_EQ(c_skip.device().type(), torch::kCUDA);
}
