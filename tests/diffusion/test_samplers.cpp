// Parity of our schedules and samplers with diffusers (DDIMScheduler, LCMScheduler): golden
// tensors come from make_golden.py beside this file, run with the project venv's interpreter.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "diffusion/samplers.hpp"
#include "io/safetensors.hpp"
#include "golden_file.hpp"
#include "../test_util.hpp"

using namespace mcm;
using namespace mcm::diffusion;

namespace {
std::vector<int64_t> to_vec(const torch::Tensor& t) { return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()); }

using Golden = test::DiffusionGolden;

double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST_F(Golden, AlphasCumprod) {
  for (std::string s : {"scaled_linear", "linear"})
    for (bool r : {false, true}) {
      NoiseSchedule ns({1000, 0.00085, 0.012, s, r});
      EXPECT_LE(max_err(ns.alphas_cumprod(), get("abar/" + s + "/" + std::to_string(int(r)))), 1e-7) << s << r;
      if (r) {
        EXPECT_EQ(ns.alphas_cumprod()[-1].item<float>(), 0.0f);  // zero terminal SNR
      }
    }
}

TEST_F(Golden, DdimTimestepsAndSteps) {
  NoiseSchedule ns;
  double worst = 0;
  int checked = 0;
  for (auto& c : cases()) {
    if (c["kind"] != "ddim") continue;
    ++checked;
    std::string name = c["name"];
    DdimOptions o;
    o.timestep_spacing = c["spacing"];
    o.steps_offset = c["offset"];
    o.set_alpha_to_one = c["set_alpha_to_one"];
    o.clip_sample = c["clip"];
    o.prediction = parse_prediction(c["prediction"]);
    o.eta = c["eta"];
    DdimSampler s(ns, o);
    ASSERT_EQ(s.set_timesteps(c["steps"]), to_vec(get(name + "/timesteps"))) << name;
    auto x = get(name + "/x");
    auto outs = get(name + "/model_out"), prevs = get(name + "/prev"), dens = get(name + "/denoised");
    auto noise = o.eta > 0 ? get(name + "/noise") : torch::Tensor();
    for (int64_t i = 0; i < outs.size(0); ++i) {
      auto r = s.step(outs[i], s.timesteps()[i], x, o.eta > 0 ? noise[i] : torch::Tensor());
      double e = std::max(max_err(r.prev_sample, prevs[i]), max_err(r.denoised, dens[i]));
      worst = std::max(worst, e);
      ASSERT_LE(e, 1e-6) << name << " step " << i;
      x = prevs[i];  // continue from the reference trajectory: per-step parity
    }
  }
  EXPECT_EQ(checked, 10);
  std::printf("DDIM worst per-step max abs error vs diffusers: %.3g\n", worst);
}

TEST_F(Golden, LcmTimestepsAndSteps) {
  NoiseSchedule ns;
  double worst = 0;
  int checked = 0;
  for (auto& c : cases()) {
    if (c["kind"] != "lcm") continue;
    ++checked;
    std::string name = c["name"];
    LcmOptions o;
    o.timestep_scaling = c["scaling"];
    o.original_inference_steps = c["original"];
    LcmSampler s(ns, o);
    ASSERT_EQ(s.set_timesteps(c["steps"]), to_vec(get(name + "/timesteps"))) << name;
    auto x = get(name + "/x");
    auto outs = get(name + "/model_out"), noise = get(name + "/noise"), prevs = get(name + "/prev"), dens = get(name + "/denoised");
    for (int64_t i = 0; i < outs.size(0); ++i) {
      auto r = s.step(outs[i], static_cast<size_t>(i), x, noise[i]);
      double e = std::max(max_err(r.prev_sample, prevs[i]), max_err(r.denoised, dens[i]));
      worst = std::max(worst, e);
      ASSERT_LE(e, 1e-6) << name << " step " << i;
      x = prevs[i];
    }
  }
  EXPECT_EQ(checked, 6);
  std::printf("LCM worst per-step max abs error vs diffusers: %.3g\n", worst);
}

TEST_F(Golden, DpmSolverPlusPlus2MTrajectories) {
  NoiseSchedule ns;
  double worst = 0;
  int checked = 0;
  for (auto& c : cases()) {
    if (c["kind"] != "dpm") continue;
    ++checked;
    std::string name = c["name"];
    DpmSolverOptions o;
    o.timestep_spacing = c["spacing"];
    o.steps_offset = c["offset"];
    o.prediction = parse_prediction(c["prediction"]);
    ScheduleOptions so;
    so.rescale_zero_terminal_snr = c.value("zero_snr", false);
    NoiseSchedule schedule(so);
    DpmSolverSampler s(schedule, o);
    ASSERT_EQ(s.set_timesteps(c["steps"]), to_vec(get(name + "/timesteps"))) << name;
    auto x = get(name + "/x");
    auto outs = get(name + "/model_out"), prevs = get(name + "/prev");
    for (int64_t i = 0; i < outs.size(0); ++i) {
      // Our own trajectory end to end (the history feeds later steps), compared at every step.
      x = s.step(outs[i], static_cast<size_t>(i), x).prev_sample;
      double e = max_err(x, prevs[i]);
      worst = std::max(worst, e);
      ASSERT_LE(e, 1e-6) << name << " step " << i;
    }
  }
  EXPECT_EQ(checked, 8);
  std::printf("DPM-Solver++(2M) worst per-step max abs error vs diffusers: %.3g\n", worst);
  DpmSolverSampler s(ns);
  s.set_timesteps(4);
  auto z = torch::zeros({1, 4});
  test::expect_error<DataError>([&] { s.step(z, 1, z); }, {"in order", "expected 0"});
}

TEST(Samplers, McmTimestepsAndGrid) {
  NoiseSchedule ns;
  LcmOptions o;
  o.timestep_scaling = 4;
  LcmSampler s(ns, o);
  EXPECT_EQ(s.set_timesteps(1), (std::vector<int64_t>{999}));
  EXPECT_EQ(s.set_timesteps(2), (std::vector<int64_t>{999, 499}));
  EXPECT_EQ(s.set_timesteps(4), (std::vector<int64_t>{999, 759, 499, 259}));
  EXPECT_EQ(s.set_timesteps(8), (std::vector<int64_t>{999, 879, 759, 639, 499, 379, 259, 139}));
  auto grid = ddim_solver_grid(1000, 50);
  EXPECT_EQ(grid.front(), 19);
  EXPECT_EQ(grid.back(), 999);
  auto [c_skip, c_out] = boundary_scalings(999, 4.0);
  EXPECT_NEAR(c_skip.item<double>(), 0.25 / (3996.0 * 3996.0 + 0.25), 1e-12);
  EXPECT_NEAR(c_out.item<double>(), 3996.0 / std::sqrt(3996.0 * 3996.0 + 0.25), 1e-7);
  test::expect_error<ConfigError>([&] { s.set_timesteps(51); }, {"LCM steps = 51"});
  test::expect_error<ConfigError>([&] { NoiseSchedule({1000, 0.00085, 0.012, "cosine", false}); }, {"beta_schedule \"cosine\""});
  test::expect_error<ConfigError>([&] { parse_prediction("x0"); }, {"prediction_type \"x0\""});
}

// At zero terminal SNR the first ancestral step (eta = 1, t = 999, abar_t = 0) has
// 1 - abar_prev - sigma^2 = 0 exactly; float32 rounding can make it -6e-8 (diffusers' DDIMScheduler
// does, and returns NaN there). The direction term is clamped at zero: every step stays finite.
TEST(Samplers, AncestralDdimAtZeroTerminalSnrStaysFinite) {
  ScheduleOptions so;
  so.rescale_zero_terminal_snr = true;
  NoiseSchedule ns(so);
  EXPECT_EQ(ns.abar(999).item<float>(), 0.0f);
  for (auto p : {Prediction::sample, Prediction::v_prediction}) {
    DdimOptions o;
    o.timestep_spacing = "trailing";
    o.set_alpha_to_one = false;
    o.prediction = p;
    o.eta = 1.0;
    DdimSampler s(ns, o);
    torch::manual_seed(0);
    auto x = torch::randn({2, 4, 3, 4, 4});
    for (auto steps : {1, 2, 4, 8, 25, 50})
      for (auto t : s.set_timesteps(steps)) {
        auto r = s.step(torch::randn_like(x) * 0.5, t, x, torch::randn_like(x));
        ASSERT_TRUE(torch::isfinite(r.prev_sample).all().item<bool>()) << "steps " << steps << " t " << t;
      }
  }
}
