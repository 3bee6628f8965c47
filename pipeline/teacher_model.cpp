#include "pipeline/teacher_model.hpp"

#include "core/rng.hpp"
#include "diffusion/noise.hpp"

namespace mcm::stages {

models::Unet3DConfig teacher_unet_config(const TeacherSection& t, int64_t channels, int64_t height, int64_t text_dim) {
  models::Unet3DConfig c;
  c.in_channels = c.out_channels = channels;
  c.down_block_types.clear();
  c.up_block_types.clear();
  c.block_out_channels.clear();
  for (int64_t i = 0; i < t.levels; ++i) {
    const bool attn = i < t.cross_attention_levels;
    c.down_block_types.push_back(attn ? "CrossAttnDownBlock3D" : "DownBlock3D");
    c.block_out_channels.push_back(t.channels << i);
  }
  for (int64_t i = t.levels - 1; i >= 0; --i)
    c.up_block_types.push_back(i < t.cross_attention_levels ? "CrossAttnUpBlock3D" : "UpBlock3D");
  c.layers_per_block = t.layers_per_block;
  c.norm_num_groups = t.norm_groups;
  c.cross_attention_dim = text_dim;
  c.attention_head_dim = t.head_dim;
  c.sample_size = height;
  return c;
}

train::LossFn teacher_loss(models::Unet3D unet, const diffusion::NoiseSchedule& schedule, torch::Tensor empty_text,
                           double caption_dropout, diffusion::Prediction prediction, uint64_t seed, torch::Device device) {
  return [=, &schedule](const train::Batch& b, int64_t) mutable {
    const int64_t n = b.latents.size(0);
    const int64_t T = schedule.num_train_timesteps();
    std::vector<rng::Key> noise_keys;
    std::vector<int64_t> ts;
    auto text = b.text_emb.clone();
    for (int64_t i = 0; i < n; ++i) {
      const auto id = static_cast<uint64_t>(b.sample_ids[static_cast<size_t>(i)]);
      noise_keys.push_back(rng::key(seed, "teacher", id, "noise"));
      rng::Stream s(rng::key(seed, "teacher", id, "timestep"));
      ts.push_back(s.uniform_int(0, T - 1));
      rng::Stream d(rng::key(seed, "teacher", id, "caption_dropout"));
      if (d.uniform() < caption_dropout) text[i].copy_(empty_text[0]);
    }
    auto x0 = b.latents.to(device);
    auto eps = diffusion::randn_per_sample(noise_keys, x0.sizes().slice(1), x0.options());
    auto t = torch::tensor(ts, torch::kInt64).to(device);
    auto xt = schedule.add_noise(x0, eps, t);
    auto pred = unet->forward(xt, t, text.to(device));
    train::LossTerms lt;
    auto target = prediction == diffusion::Prediction::v_prediction ? schedule.velocity(x0, eps, t) : eps;
    lt.loss = torch::mse_loss(pred.to(torch::kFloat32), target);
    return lt;
  };
}

diffusion::ScheduleOptions teacher_schedule(const TeacherSection& t) {
  diffusion::ScheduleOptions o;
  o.rescale_zero_terminal_snr = t.zero_terminal_snr;
  return o;
}

diffusion::DdimOptions teacher_ddim(const TeacherSection& t) {
  diffusion::DdimOptions o;
  o.prediction = diffusion::parse_prediction(t.prediction);
  o.set_alpha_to_one = false;
  if (t.zero_terminal_snr) {
    o.timestep_spacing = "trailing";
  } else {
    o.steps_offset = 1;
  }
  return o;
}

nlohmann::json teacher_scheduler_config(const TeacherSection& t) {
  auto d = teacher_ddim(t);
  auto s = teacher_schedule(t);
  return {{"_class_name", "DDIMScheduler"}, {"num_train_timesteps", s.num_train_timesteps}, {"beta_start", s.beta_start},
          {"beta_end", s.beta_end}, {"beta_schedule", s.beta_schedule}, {"prediction_type", t.prediction},
          {"rescale_betas_zero_snr", s.rescale_zero_terminal_snr}, {"clip_sample", false},
          {"set_alpha_to_one", d.set_alpha_to_one}, {"steps_offset", d.steps_offset},
          {"timestep_spacing", d.timestep_spacing}};
}

}  // namespace mcm::stages
