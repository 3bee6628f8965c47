// MCM's training step against the PyTorch step of make_cd_golden.py (diffusers'
// UNet3DConditionModel + PEFT, written from MCM.md), fed the same draws: L_CD, the generator's and
// discriminator's hinge losses and the gradient penalty (teacher backbone; real frames from the
// clip, or images with their own captions), the LoRA, motion-head and discriminator gradients, for
// every motion representation, with and without mixed trajectories, for epsilon and x0 (zero
// terminal SNR) teachers. Then the pieces against their formulas: the
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
  auto x = a.to(torch::kCPU, torch::kFloat64), y = b.to(torch::kCPU, torch::kFloat64);
  return ((x - y).norm() / y.norm().clamp_min(1e-30)).item<double>();
}

// The draws the stage makes on the CPU (draw_adv) stay there in the CUDA runs, as in the stage.
bool cpu_draw(const std::string& key) {
  for (const char* p : {"adv/g_frames", "adv/d_frames", "adv/real_frames", "adv/gp_alpha", "adv/g_aug/", "adv/d_fake_aug/",
                        "adv/d_real_aug/"})
    if (key.rfind(p, 0) == 0) return true;
  return false;
}

models::TensorMap with_prefix(const models::TensorMap& all, const std::string& prefix, bool strip = true) {
  models::TensorMap out;
  for (auto& [k, v] : all)
    if (k.rfind(prefix, 0) == 0) out[strip ? k.substr(prefix.size()) : k] = v;
  return out;
}

// The golden's stand-in autoencoder for the DINOv2 path: pixels = (M . latents) upsampled x2
// (nearest), differentiable, so the backbone's decode -> augment -> resize -> normalise path runs.
class MatrixDecoder : public models::FrameAutoencoder {
 public:
  explicit MatrixDecoder(torch::Tensor m) : m_(std::move(m)) {}
  torch::Tensor encode_frames(const torch::Tensor&, const std::vector<uint64_t>&) override {
    throw DataError("MatrixDecoder: decode only");
  }
  torch::Tensor decode(const torch::Tensor& z) override { return decode_differentiable(z); }
  torch::Tensor decode_differentiable(const torch::Tensor& z) override {
    return torch::einsum("oc,nchw->nohw", {m_.to(z.scalar_type()), z}).repeat_interleave(2, 2).repeat_interleave(2, 3);
  }
  int64_t latent_channels() const override { return m_.size(1); }
  int64_t downsample() const override { return 2; }
  double scaling_factor() const override { return 1.0; }
  std::string name() const override { return "matrix"; }

 private:
  torch::Tensor m_;
};

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
// reference's own float32 error against its float64 result, whichever is larger. The *_CUDA
// cases run the float64 step on a GPU (skipped without one): the same bound, and every tensor the
// stage keeps on the CPU (the adversarial draws) kept there.
class CdGolden : public ::testing::TestWithParam<std::tuple<std::string, bool, bool>> {};

TEST_P(CdGolden, LossAndGradientsMatchThePyTorchStep) {
  torch::set_num_threads(1);
  const auto& [name, f64, cuda] = GetParam();
  if (cuda && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  nlohmann::json cases;
  std::ifstream(golden() / "cases.json") >> cases;
  const auto& c = cases.at(name);
  auto g = models::read_tensors(golden() / (name + (f64 ? "_f64" : "") + ".safetensors"));
  for (auto& [key, t] : g)
    if (!cpu_draw(key)) t = t.to(device);
  auto g64 = f64 ? g : models::read_tensors(golden() / (name + "_f64.safetensors"));
  const auto dtype = f64 ? torch::kFloat64 : torch::kFloat32;
  // The sign flips reach every LoRA gradient through the one shared dL/dpred, so which tensors'
  // float32 errors come out small is chance (on one CPU a lora_A gradient's reference error was
  // 3e-5 and ours 2e-4, while the step's worst reference error was 8e-5): the LoRA gradients'
  // bound uses the worst reference error over all of them.
  double ref_worst = 0;
  if (!f64)
    for (auto& [key, t] : g)
      if (key.rfind("grad/", 0) == 0) ref_worst = std::max(ref_worst, rel_err(t, g64.at(key)));
  auto tol = [&](const std::string& key) {
    const double ref = key.rfind("grad/", 0) == 0 ? ref_worst : rel_err(g.at(key), g64.at(key));
    return f64 ? 1e-4 : std::max(1e-4, 4 * ref);
  };

  stages::CdModels m;
  m.teacher = models::load_video_unet(golden() / "teacher", dtype);
  m.student = models::load_video_unet(golden() / "teacher", dtype);
  m.teacher->to(device);
  models::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 4;
  models::attach_lora(*m.student, lc);
  models::import_lora(*m.student, with_prefix(g, "lora/"), name);
  models::freeze_all_but_lora(*m.student);
  m.student->to(device);
  for (auto& p : m.teacher->parameters()) p.set_requires_grad(false);
  models::MotionHeadConfig hc{4, 16, 8};
  m.head = models::MotionHead(hc);
  m.head_target = models::MotionHead(hc);
  models::load_strict(*m.head, with_prefix(g, "head/"), name + " head");
  models::load_strict(*m.head_target, with_prefix(g, "head_target/"), name + " head_target");
  m.head->to(device, dtype);
  m.head_target->to(device, dtype);
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

  // The frame discriminator on the teacher backbone, with the reference's heads and draws.
  const int64_t k = c.at("disc_frames").get<int64_t>();
  models::DiffAugmentOptions ao;
  std::unique_ptr<models::DiscBackbone> backbone;
  std::unique_ptr<MatrixDecoder> decoder;
  if (c.at("backbone") == "dinov2") {
    decoder = std::make_unique<MatrixDecoder>(g.at("adv/decode"));
    auto dino = models::load_dinov2(golden() / "dinov2", dtype);
    dino->to(device);
    backbone = std::make_unique<models::Dinov2Backbone>(*decoder, dino, c.at("dino_size").get<int64_t>(), ao);
  } else {
    backbone = std::make_unique<models::TeacherBackbone>(m.teacher, c.at("disc_timestep").get<int64_t>(), ao);
  }
  stages::Adversary adv;
  adv.backbone = backbone.get();
  adv.disc = models::FrameDiscriminator(backbone->channels(), 16, c.at("cmap_dim").get<int64_t>(),
                                        c.at("virtual_batch").get<int64_t>());
  models::load_strict(*adv.disc, with_prefix(g, "disc/"), name + " discriminator");
  adv.disc->to(device, dtype);
  auto aug = [&](const std::string& which) {
    auto f = [&](const char* field) { return g.at(cat("adv/", which, "/", field)); };
    return models::DiffAugmentDraws{f("brightness"), f("saturation"), f("contrast"), f("shift_h"),
                                    f("shift_w"),    f("cutout_h"),   f("cutout_w")};
  };
  stages::AdvDraws ad{g.at("adv/g_frames"), g.at("adv/d_frames"), g.at("adv/real_frames"), aug("g_aug"),
                      aug("d_fake_aug"),    aug("d_real_aug"),    g.at("adv/gp_alpha")};
  ASSERT_EQ(ad.g_frames.size(1), k);
  // As the trainer runs it: the generator's pass with the discriminator frozen, then its own pass.
  for (auto& p : adv.disc->parameters()) p.set_requires_grad(false);
  auto loss_g = stages::generator_adv_loss(adv, out.pred, g.at("text").to(dtype), ad);
  (out.loss + c.at("disc_weight").get<double>() * loss_g).backward();
  for (auto& p : adv.disc->parameters()) p.set_requires_grad(true);
  const bool images = g.count("adv/real") > 0;
  auto real = images ? g.at("adv/real").to(dtype) : stages::pick_frames(g.at("latents").to(dtype), ad.real_frames);
  auto real_text = images ? g.at("adv/real_text").to(dtype) : g.at("text").to(dtype).repeat_interleave(k, 0);
  auto dt = stages::discriminator_losses(adv, out.pred, g.at("text").to(dtype), real, real_text, ad);
  (dt.hinge + c.at("gp_weight").get<double>() * dt.gp).backward();

  const std::string sfx = f64 ? "_f64" : "";
  const double ref = c.at("loss" + sfx).get<double>();
  EXPECT_NEAR(out.loss.item<double>(), ref, 1e-4 * std::abs(ref)) << name;
  for (auto& [key, value] : {std::pair<std::string, torch::Tensor>{"loss_g", loss_g}, {"loss_d", dt.hinge}, {"gp", dt.gp}}) {
    const double r = c.at(key + sfx).get<double>();
    EXPECT_NEAR(value.item<double>(), r, 1e-4 * std::abs(r)) << name << " " << key;
  }
  // The biases of the convs before a batch norm have zero gradient in exact arithmetic (the norm
  // removes a per-channel constant): both sides hold rounding noise there, so errors are relative
  // to the larger of the tensor's norm and 1e-6 of the largest discriminator gradient's.
  double scale = 0;
  for (auto& [key, v] : with_prefix(g, "grad_disc/", false)) scale = std::max(scale, v.to(torch::kFloat64).norm().item<double>());
  double worst_disc = 0;
  for (auto& p : adv.disc->named_parameters(true)) {
    const std::string key = "grad_disc/" + p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    const auto ref_g = g.at(key).to(torch::kFloat64);
    const double e = (p.value().grad().to(torch::kCPU, torch::kFloat64) - ref_g.cpu()).norm().item<double>() /
                     std::max(ref_g.norm().item<double>(), 1e-6 * scale);
    EXPECT_LT(e, tol(key)) << name << " disc " << p.key();
    worst_disc = std::max(worst_disc, e);
  }
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
            << ", worst LoRA gradient rel err " << worst << " over " << checked << " tensors, worst discriminator "
            << worst_disc << (images ? " (real: images" : " (real: clip frames") << ", backbone " << c.at("backbone").get<std::string>()
            << ")\n";
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
                                           "x0_zsnr_learn_mixed", "eps_learn_real_dino", "eps_learn_mixed_dino",
                                           "eps_raw_mixed_dino"),
                         ::testing::Bool(), ::testing::Values(false)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) ? "_f64" : "_f32");
                         });
INSTANTIATE_TEST_SUITE_P(Gpu, CdGolden, ::testing::Combine(
                         ::testing::Values("eps_learn_real", "eps_learn_mixed", "x0_zsnr_learn_mixed", "eps_freq_low_mixed",
                                           "eps_learn_mixed_dino"),
                         ::testing::Values(true), ::testing::Values(true)),
                         [](const auto& info) { return std::get<0>(info.param) + "_f64_CUDA"; });

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

// The guidance interval: outside [guidance_t_min, guidance_t_max] the target solver is the
// conditional one (w = 0), inside it is the guided step unchanged; per sample, by its own t.
TEST(GuidedStep, IsConditionalOutsideTheGuidanceInterval) {
  torch::set_num_threads(1);
  torch::NoGradGuard ng;
  auto g = models::read_tensors(golden() / "eps_raw_real_f64.safetensors");
  auto teacher = models::load_video_unet(golden() / "teacher", torch::kFloat64);
  diffusion::NoiseSchedule schedule{diffusion::ScheduleOptions{}};
  const auto& x0 = g.at("latents");
  const int64_t B = x0.size(0);
  ASSERT_GE(B, 2);
  auto t = torch::full({B}, 500, torch::kInt64);
  t[0] = 100;  // sample 0 below the interval, the others inside it
  auto s = t - 20;
  auto x_t = schedule.add_noise(x0, g.at("noise"), t);
  const auto& text = g.at("text");
  auto uncond = g.at("uncond").expand({B, text.size(1), text.size(2)});
  auto w = torch::full({B}, 7.0, torch::kFloat32);
  stages::CdOptions all, interval;
  interval.guidance_t_min = 200;
  interval.guidance_t_max = 800;
  auto full = stages::guided_step(teacher, schedule, all, x_t, t, s, text, uncond, w);
  auto cut = stages::guided_step(teacher, schedule, interval, x_t, t, s, text, uncond, w);
  auto cond = stages::guided_step(teacher, schedule, all, x_t, t, s, text, uncond, torch::zeros({B}));
  EXPECT_TRUE(torch::equal(cut.x_s[0], cond.x_s[0]));
  EXPECT_TRUE(torch::equal(cut.x0_g[0], cond.x0_c[0]));
  EXPECT_TRUE(torch::equal(cut.x_s.slice(0, 1), full.x_s.slice(0, 1)));
  // The guidance moves the step: the two differ where it acts.
  EXPECT_GT((full.x_s[0] - cond.x_s[0]).abs().max().item<double>(), 1e-6);
  // x0_g is c + w (c - u) with the two passes it returns.
  EXPECT_LT((full.x0_g - (full.x0_c + 7.0 * (full.x0_c - full.x0_u))).abs().max().item<double>(), 1e-12);
  interval.guidance_t_max = 400;  // now every sample is outside
  auto none = stages::guided_step(teacher, schedule, interval, x_t, t, s, text, uncond, w);
  EXPECT_TRUE(torch::equal(none.x_s, cond.x_s));
}
