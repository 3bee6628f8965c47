// MCM's consistency distillation step against the PyTorch step of make_cd_golden.py (diffusers'
// UNet3DConditionModel + PEFT, written from MCM.md), fed the same draws: L_CD and the LoRA and
// motion-head gradients for every motion representation, with and without mixed trajectories, for
// epsilon and x0 (zero terminal SNR) teachers. Then the pieces against their formulas: the
// Butterworth mask, the temporal difference, the head's identity start and its EMA update, and
// the draws' independence of the micro-batch split.
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "models/lora.hpp"
#include "models/motion_head.hpp"
#include "models/weights.hpp"
#include "pipeline/distill_model.hpp"
#include "../golden.hpp"
#include "../test_util.hpp"

using namespace mcm;
namespace stdfs = std::filesystem;

namespace {

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).norm() / b.to(torch::kFloat64).norm().clamp_min(1e-30)).item<double>();
}

models::TensorMap with_prefix(const models::TensorMap& all, const std::string& prefix, bool strip = true) {
  models::TensorMap out;
  for (auto& [k, v] : all)
    if (k.rfind(prefix, 0) == 0) out[strip ? k.substr(prefix.size()) : k] = v;
  return out;
}

const stdfs::path& golden() {
  static const stdfs::path dir = test::golden_dir("tests/distill/make_cd_golden.py");
  return dir;
}

}  // namespace

// Each case runs twice. In float64 (every model and input widened, the schedule's tables and
// scalings the same float32 values on both sides) the step must match the reference within 1e-4
// relative: what is left is the method, not rounding. In float32 the pseudo-Huber loss amplifies
// rounding (its gradient d / sqrt(d^2 + c^2) with c = 0.001 flips sign for elements near zero, and
// a mixed trajectory's x0 divides by sqrt(abar_999) = 0.068), so the bound is 1e-4 or 4x the
// reference's own float32 error against its float64 result, whichever is larger.
class CdGolden : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(CdGolden, LossAndGradientsMatchThePyTorchStep) {
  torch::set_num_threads(1);
  const auto& [name, f64] = GetParam();
  nlohmann::json cases;
  std::ifstream(golden() / "cases.json") >> cases;
  const auto& c = cases.at(name);
  auto g = models::read_tensors(golden() / (name + (f64 ? "_f64" : "") + ".safetensors"));
  auto g64 = f64 ? g : models::read_tensors(golden() / (name + "_f64.safetensors"));
  const auto dtype = f64 ? torch::kFloat64 : torch::kFloat32;
  auto tol = [&](const std::string& key) {
    return f64 ? 1e-4 : std::max(1e-4, 4 * rel_err(g.at(key), g64.at(key)));
  };

  stages::CdModels m;
  m.teacher = models::load_unet3d(golden() / "teacher", dtype);
  m.student = models::load_unet3d(golden() / "teacher", dtype);
  models::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 4;
  models::attach_lora(*m.student, lc);
  models::import_lora(*m.student, with_prefix(g, "lora/"), name);
  models::freeze_all_but_lora(*m.student);
  for (auto& p : m.teacher->parameters()) p.set_requires_grad(false);
  models::MotionHeadConfig hc{4, 16, 8};
  m.head = models::MotionHead(hc);
  m.head_target = models::MotionHead(hc);
  models::load_strict(*m.head, with_prefix(g, "head/"), name + " head");
  models::load_strict(*m.head_target, with_prefix(g, "head_target/"), name + " head_target");
  m.head->to(dtype);
  m.head_target->to(dtype);
  for (auto& p : m.head_target->parameters()) p.set_requires_grad(false);

  diffusion::ScheduleOptions so;
  so.rescale_zero_terminal_snr = c.at("zero_snr").get<bool>();
  diffusion::NoiseSchedule schedule(so);
  stages::CdOptions o;
  o.prediction = diffusion::parse_prediction(c.at("prediction"));
  models::MotionRepresentation::Options mo;
  mo.kind = models::parse_motion_kind(c.at("motion"), "motion");
  mo.freq_high_pass = c.at("freq_band") == "high";
  models::MotionRepresentation motion(mo);

  stages::CdDraws d{g.at("index"), g.at("w"), g.at("noise"), g.at("mixed").to(torch::kBool), g.at("mixed_noise")};
  auto out = stages::consistency_loss(m, schedule, o, motion, g.at("latents"), g.at("text"), g.at("uncond"), d);
  ASSERT_EQ(out.loss.scalar_type(), dtype);
  out.loss.backward();

  const double ref = c.at(f64 ? "loss_f64" : "loss").get<double>();
  EXPECT_NEAR(out.loss.item<double>(), ref, 1e-4 * std::abs(ref)) << name;
  EXPECT_LT(rel_err(out.pred.detach(), g.at("pred")), tol("pred")) << name;
  size_t checked = 0;
  double worst = 0;
  for (auto& p : m.student->named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    const std::string key = "grad/" + p.key();
    ASSERT_TRUE(g.count(key)) << "no reference gradient for " << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    const double e = rel_err(p.value().grad(), g.at(key));
    EXPECT_LT(e, tol(key)) << name << " " << p.key();
    worst = std::max(worst, e);
    ++checked;
  }
  std::cout << name << (f64 ? " f64" : " f32") << ": loss rel err " << std::abs(out.loss.item<double>() - ref) / std::abs(ref)
            << ", worst LoRA gradient rel err " << worst << " over " << checked << " tensors\n";
  EXPECT_EQ(checked, with_prefix(g, "grad/").size());
  if (mo.kind == models::MotionKind::learn) {
    for (auto& p : m.head->named_parameters(true))
      EXPECT_LT(rel_err(p.value().grad(), g.at("grad_head/" + p.key())), tol("grad_head/" + p.key())) << name << " head " << p.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CdGolden, ::testing::Combine(
                         ::testing::Values("eps_raw_real", "eps_raw_mixed", "eps_diff_real", "eps_diff_mixed",
                                           "eps_freq_low_real", "eps_freq_low_mixed", "eps_freq_high_real",
                                           "eps_freq_high_mixed", "eps_learn_real", "eps_learn_mixed",
                                           "x0_zsnr_learn_mixed"),
                         ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) ? "_f64" : "_f32");
                         });

TEST(MotionRepresentation, ButterworthMaskFollowsItsFormula) {
  auto low = models::butterworth_mask(4, 6, 8, 0.25, 4, false);
  auto high = models::butterworth_mask(4, 6, 8, 0.25, 4, true);
  ASSERT_EQ(low.sizes(), (std::vector<int64_t>{4, 6, 8}));
  // Centre (index N/2 on every axis) is the zero frequency: pass 1.
  EXPECT_FLOAT_EQ(low[2][3][4].item<float>(), 1.0f);
  // One element by hand: t = 0, h = 1, w = 6: d2 = 1 + (2/6 - 1)^2 + (12/8 - 1)^2.
  const double d2 = 1.0 + std::pow(2.0 / 6 - 1, 2) + std::pow(12.0 / 8 - 1, 2);
  EXPECT_NEAR(low[0][1][6].item<double>(), 1.0 / (1.0 + std::pow(d2 / 0.0625, 4)), 1e-7);
  EXPECT_LT((low + high - 1).abs().max().item<double>(), 1e-7);
  EXPECT_THROW(models::butterworth_mask(4, 4, 4, 0, 4, false), ConfigError);
}

TEST(MotionRepresentation, LowPassKeepsAConstantAndTheBandsSumToTheInput) {
  auto x = torch::randn({2, 4, 4, 8, 8});
  auto lo = models::butterworth_mask(4, 8, 8, 0.25, 4, false), hi = models::butterworth_mask(4, 8, 8, 0.25, 4, true);
  auto c = torch::full({1, 1, 4, 8, 8}, 3.0);
  EXPECT_LT((models::frequency_filter(c, lo) - c).abs().max().item<double>(), 1e-5);
  EXPECT_LT(models::frequency_filter(c, hi).abs().max().item<double>(), 1e-5);
  EXPECT_LT((models::frequency_filter(x, lo) + models::frequency_filter(x, hi) - x).abs().max().item<double>(), 1e-5);
}

TEST(MotionRepresentation, TemporalDifferenceAndHeadStartAsFormulas) {
  auto x = torch::randn({2, 4, 5, 3, 3});
  auto d = models::temporal_difference(x);
  ASSERT_EQ(d.size(2), 4);
  EXPECT_TRUE(torch::equal(d.select(2, 1), x.select(2, 2) - x.select(2, 1)));
  EXPECT_THROW(models::temporal_difference(torch::randn({1, 4, 1, 3, 3})), DataError);

  models::MotionHead head(models::MotionHeadConfig{4, 16, 8});
  EXPECT_TRUE(torch::equal(head->forward(x), x)) << "a fresh head is the identity (conv2 starts at zero)";
  EXPECT_THROW(models::MotionHead(models::MotionHeadConfig{4, 15, 8}), ConfigError);
  EXPECT_THROW(models::parse_motion_kind("optical_flow", "distill.motion"), ConfigError);
}

TEST(MotionRepresentation, EmaUpdateIsDecayTimesTargetPlusTheRest) {
  models::MotionHead online(models::MotionHeadConfig{4, 16, 8}), target(models::MotionHeadConfig{4, 16, 8});
  {
    torch::NoGradGuard ng;
    for (auto& p : online->parameters()) p.normal_();
    for (auto& p : target->parameters()) p.normal_();
  }
  models::TensorMap before;
  for (auto& [k, v] : models::state_dict(*target)) before[k] = v.clone();
  stages::ema_update(*target, *online, 0.95);
  auto on = models::state_dict(*online);
  for (auto& [k, v] : models::state_dict(*target))
    EXPECT_LT((v - (0.95 * before.at(k) + 0.05 * on.at(k))).abs().max().item<double>(), 1e-6) << k;
}

TEST(CdDraws, DependOnlyOnTheSampleIds) {
  stages::DistillSection d;
  d.mixed_prob = 0.5;
  const std::vector<int64_t> shape{4, 3, 2, 2};
  auto all = stages::draw_cd({7, 8, 9, 10}, d, 42, shape, torch::kCPU);
  auto tail = stages::draw_cd({9, 10}, d, 42, shape, torch::kCPU);
  EXPECT_TRUE(torch::equal(all.index.slice(0, 2), tail.index));
  EXPECT_TRUE(torch::equal(all.w.slice(0, 2), tail.w));
  EXPECT_TRUE(torch::equal(all.noise.slice(0, 2), tail.noise));
  EXPECT_TRUE(torch::equal(all.mixed.slice(0, 2), tail.mixed));
  EXPECT_TRUE(torch::equal(all.mixed_noise.slice(0, 2), tail.mixed_noise));
  EXPECT_GE(all.w.min().item<double>(), d.w_min);
  EXPECT_LE(all.w.max().item<double>(), d.w_max);
  // Over many samples: i covers the grid, the mixed share is near p.
  std::vector<int64_t> ids(2000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  auto many = stages::draw_cd(ids, d, 42, {1, 1, 1, 1}, torch::kCPU);
  EXPECT_EQ(many.index.min().item<int64_t>(), 0);
  EXPECT_EQ(many.index.max().item<int64_t>(), d.solver_steps - 1);
  EXPECT_NEAR(many.mixed.to(torch::kFloat64).mean().item<double>(), 0.5, 0.05);
}
