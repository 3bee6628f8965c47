// The consistency distillation step (see distill_model.hpp).
#include "pipeline/distill_model.hpp"

#include "core/error.hpp"
#include "core/rng.hpp"
#include "diffusion/noise.hpp"
#include "diffusion/solver.hpp"

namespace mcm::stages {

CdDraws draw_cd(const std::vector<int64_t>& sample_ids, const DistillSection& d, uint64_t seed,
                at::IntArrayRef latent_shape, torch::Device device) {
  std::vector<int64_t> index;
  std::vector<float> w;
  std::vector<uint8_t> mixed;
  std::vector<rng::Key> noise_keys, mixed_keys;
  for (auto id64 : sample_ids) {
    const auto id = static_cast<uint64_t>(id64);
    index.push_back(rng::Stream(rng::key(seed, "distill", id, "solver_index")).uniform_int(0, d.solver_steps - 1));
    w.push_back(static_cast<float>(d.w_min + (d.w_max - d.w_min) * rng::Stream(rng::key(seed, "distill", id, "guidance")).uniform()));
    mixed.push_back(rng::Stream(rng::key(seed, "distill", id, "mixed")).uniform() < d.mixed_prob ? 1 : 0);
    noise_keys.push_back(rng::key(seed, "distill", id, "noise"));
    mixed_keys.push_back(rng::key(seed, "distill", id, "mixed_noise"));
  }
  const auto n = static_cast<int64_t>(sample_ids.size());
  CdDraws r;
  r.index = torch::tensor(index, torch::kInt64).to(device);
  r.w = torch::from_blob(w.data(), {n}, torch::kFloat32).clone().to(device);
  r.mixed = torch::from_blob(mixed.data(), {n}, torch::kUInt8).to(torch::kBool).to(device);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  r.noise = diffusion::randn_per_sample(noise_keys, latent_shape, f32);
  r.mixed_noise = diffusion::randn_per_sample(mixed_keys, latent_shape, f32);
  return r;
}

namespace {

// float32, or float64 when the input is (the golden comparison runs the whole step in float64).
torch::Tensor wide(const torch::Tensor& x) { return x.scalar_type() == torch::kFloat64 ? x : x.to(torch::kFloat32); }

}  // namespace

CdOptions cd_options(const DistillSection& d, diffusion::Prediction prediction) {
  CdOptions o;
  o.prediction = prediction;
  o.solver_steps = d.solver_steps;
  o.timestep_scaling = d.timestep_scaling;
  o.huber_c = d.huber_c;
  o.guidance_t_min = d.guidance_t_min;
  o.guidance_t_max = d.guidance_t_max;
  return o;
}

torch::Tensor consistency(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                          const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& text) {
  auto out = wide(unet->forward(x, t, text));
  auto x0 = schedule.predict_x0(out, x, t, o.prediction);
  auto [c_skip, c_out] = diffusion::boundary_scalings(t, o.timestep_scaling);
  return diffusion::per_sample(c_skip, x) * x + diffusion::per_sample(c_out, x) * x0;
}

GuidedStep guided_step(const models::VideoUnet& teacher, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                       const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& s, const torch::Tensor& text,
                       const torch::Tensor& uncond, const torch::Tensor& w) {
  auto out_c = wide(teacher->forward(x_t, t, text));
  auto out_u = wide(teacher->forward(x_t, t, uncond));
  // Outside the guidance interval w is 0 (the conditional target); inside, the drawn w unchanged.
  auto inside = (t >= o.guidance_t_min).logical_and(t <= o.guidance_t_max);
  auto wt = w.to(x_t.scalar_type());
  auto wg = diffusion::per_sample(torch::where(inside.to(wt.device()), wt, torch::zeros_like(wt)), x_t);
  GuidedStep r;
  r.x0_c = schedule.predict_x0(out_c, x_t, t, o.prediction);
  r.x0_u = schedule.predict_x0(out_u, x_t, t, o.prediction);
  auto eps_c = schedule.predict_eps(out_c, x_t, t, o.prediction), eps_u = schedule.predict_eps(out_u, x_t, t, o.prediction);
  r.x0_g = r.x0_c + wg * (r.x0_c - r.x0_u);
  auto eps_g = eps_c + wg * (eps_c - eps_u);
  r.x_s = diffusion::ddim_solver_step(schedule, r.x0_g, eps_g, s);
  return r;
}

CdOutput consistency_loss(CdModels& m, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                          models::MotionRepresentation& motion, const torch::Tensor& x0_real, const torch::Tensor& text,
                          const torch::Tensor& uncond, const CdDraws& draws) {
  const int64_t B = x0_real.size(0), T = schedule.num_train_timesteps();
  require<DataError>(draws.index.numel() == B && draws.w.numel() == B && draws.noise.sizes() == x0_real.sizes() &&
                         draws.mixed.numel() == B && draws.mixed_noise.sizes() == x0_real.sizes(),
                     "distill: the draws do not match the micro-batch of ", B, " latents ", x0_real.sizes());
  const auto device = x0_real.device();
  auto last = torch::full({B}, T - 1, torch::TensorOptions().dtype(torch::kInt64).device(device));

  // Mixed trajectories: the student's own one-step sample from pure noise replaces x0 (no grad).
  torch::Tensor x0 = wide(x0_real);
  auto rows = draws.mixed.nonzero().flatten();
  if (rows.numel() > 0) {
    torch::NoGradGuard ng;
    auto z = draws.mixed_noise.index_select(0, rows);
    auto t_last = last.index_select(0, rows);
    auto out = wide(m.student->forward(z, t_last, text.index_select(0, rows)));
    auto own = schedule.predict_x0(out, z, t_last, o.prediction);
    x0 = x0.index_copy(0, rows, own);
  }

  auto ts = diffusion::solver_timesteps(draws.index, T, o.solver_steps);
  const auto& t = ts.t;
  const auto& s = ts.s;
  auto eps = draws.noise.to(x0.scalar_type());
  // x_t = eps exactly at t = T - 1 (MCM.md; the same value at zero terminal SNR, where abar = 0).
  auto x_t = torch::where(diffusion::per_sample(t == T - 1, x0), eps, schedule.add_noise(x0, eps, t));

  auto pred = consistency(m.student, schedule, o, x_t, t, text);

  torch::Tensor target;
  {
    torch::NoGradGuard ng;
    auto step = guided_step(m.teacher, schedule, o, x_t, t, s, text, uncond.expand({B, uncond.size(1), uncond.size(2)}),
                            draws.w);
    target = consistency(m.student, schedule, o, step.x_s, s, text);
  }

  const bool learn = motion.options().kind == models::MotionKind::learn;
  auto mp = motion(pred, learn ? m.head : nullptr);
  torch::Tensor mt;
  {
    torch::NoGradGuard ng;
    mt = motion(target, learn ? m.head_target : nullptr);
  }
  const double c = o.huber_c;
  CdOutput r;
  r.loss = (torch::sqrt((wide(mp) - wide(mt)).pow(2) + c * c) - c).mean();
  r.pred = pred;
  return r;
}

AdvDraws draw_adv(const std::vector<int64_t>& sample_ids, int64_t k, int64_t frames, int64_t height, int64_t width,
                  const models::DiffAugmentOptions& aug, uint64_t seed) {
  require<ConfigError>(k > 0 && frames > 0, "distill: ", k, " discriminator frames from clips of ", frames);
  const auto B = static_cast<int64_t>(sample_ids.size());
  auto pick = [&](const char* purpose) {
    std::vector<int64_t> v;
    for (auto id : sample_ids) {
      rng::Stream st(rng::key(seed, "distill", static_cast<uint64_t>(id), purpose));
      for (int64_t j = 0; j < k; ++j) v.push_back(st.uniform_int(0, frames - 1));
    }
    return torch::tensor(v, torch::kInt64).view({B, k});
  };
  auto keys = [&](const std::string& purpose) {
    std::vector<rng::Key> out;
    for (auto id : sample_ids)
      for (int64_t j = 0; j < k; ++j) out.push_back(rng::key(seed, "distill", static_cast<uint64_t>(id), cat(purpose, "/", j)));
    return out;
  };
  AdvDraws d;
  d.g_frames = pick("g_frames");
  d.d_frames = pick("d_frames");
  d.real_frames = pick("real_frames");
  d.g_aug = models::draw_diff_augment(keys("g_aug"), height, width, aug);
  d.d_fake_aug = models::draw_diff_augment(keys("d_fake_aug"), height, width, aug);
  d.d_real_aug = models::draw_diff_augment(keys("d_real_aug"), height, width, aug);
  std::vector<float> alpha;
  for (auto id : sample_ids) {
    rng::Stream st(rng::key(seed, "distill", static_cast<uint64_t>(id), "gp_alpha"));
    for (int64_t j = 0; j < k; ++j) alpha.push_back(static_cast<float>(st.uniform()));
  }
  d.gp_alpha = torch::tensor(alpha);
  return d;
}

torch::Tensor pick_frames(const torch::Tensor& x, const torch::Tensor& idx) {
  require<DataError>(x.dim() == 5 && idx.dim() == 2 && idx.size(0) == x.size(0), "distill: frames ", idx.sizes(),
                     " of clips ", x.sizes());
  const int64_t B = x.size(0), k = idx.size(1);
  auto i = idx.to(x.device()).view({B, 1, k, 1, 1}).expand({B, x.size(1), k, x.size(3), x.size(4)});
  return x.gather(2, i).permute({0, 2, 1, 3, 4}).reshape({B * k, x.size(1), x.size(3), x.size(4)});
}

torch::Tensor pooled_text(const torch::Tensor& text) { return text.mean(1); }

torch::Tensor generator_adv_loss(Adversary& a, const torch::Tensor& pred, const torch::Tensor& text, const AdvDraws& d) {
  const int64_t k = d.g_frames.size(1);
  auto ctx = text.repeat_interleave(k, 0);
  auto fake = pick_frames(pred, d.g_frames);
  auto feats = a.backbone->features(fake, ctx.to(fake.scalar_type()), d.g_aug);
  return models::hinge_g_loss(a.disc->forward(feats, pooled_text(ctx)));
}

DiscTerms discriminator_losses(Adversary& a, const torch::Tensor& pred, const torch::Tensor& text,
                               const torch::Tensor& real_frames, const torch::Tensor& real_text, const AdvDraws& d) {
  const int64_t k = d.d_frames.size(1);
  auto ctx = text.repeat_interleave(k, 0);
  require<DataError>(real_frames.size(0) == ctx.size(0) && real_text.size(0) == ctx.size(0), "distill: ",
                     real_frames.size(0), " real frames and ", real_text.size(0), " captions for ", ctx.size(0), " fake frames");
  std::vector<torch::Tensor> f_fake, f_real;
  {
    torch::NoGradGuard ng;
    auto fake = pick_frames(pred.detach(), d.d_frames);
    f_fake = a.backbone->features(fake, ctx.to(fake.scalar_type()), d.d_fake_aug);
    f_real = a.backbone->features(real_frames.to(fake.scalar_type()), real_text.to(fake.scalar_type()), d.d_real_aug);
  }
  auto c_fake = pooled_text(ctx), c_real = pooled_text(real_text);
  DiscTerms t;
  auto real = a.disc->forward(f_real, c_real), fake = a.disc->forward(f_fake, c_fake);
  t.hinge = models::hinge_d_loss(real, fake);
  t.real_logit = real.detach().to(torch::kFloat64).mean().item<double>();
  t.fake_logit = fake.detach().to(torch::kFloat64).mean().item<double>();
  t.gp = models::gradient_penalty(a.disc, f_real, f_fake, c_fake, d.gp_alpha);
  return t;
}

void ema_update(torch::nn::Module& target, torch::nn::Module& online, double decay) {
  torch::NoGradGuard ng;
  auto src = online.named_parameters(true);
  for (auto& p : target.named_parameters(true)) {
    auto* o = src.find(p.key());
    require<DataError>(o != nullptr && o->sizes() == p.value().sizes(), "EMA update: no parameter ", p.key(),
                       " of matching shape in the online module");
    p.value().mul_(decay).add_(*o, 1.0 - decay);
  }
}

}  // namespace mcm::stages
