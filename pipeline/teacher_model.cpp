#include "pipeline/teacher_model.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "models/weights.hpp"
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
    const int64_t width = t.channels << i;
    c.block_out_channels.push_back(t.max_channels > 0 ? std::min(width, t.max_channels) : width);
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

models::UnetMotionConfig teacher_unet_motion_config(const TeacherSection& t, int64_t channels, int64_t height,
                                                    int64_t text_dim) {
  const auto u = teacher_unet_config(t, channels, height, text_dim);
  models::UnetMotionConfig c;
  c.in_channels = c.out_channels = channels;
  c.block_out_channels = u.block_out_channels;
  c.down_block_types.clear();
  c.up_block_types.clear();
  for (const auto& d : u.down_block_types) c.down_block_types.push_back(d == "CrossAttnDownBlock3D" ? "CrossAttnDownBlockMotion" : "DownBlockMotion");
  for (const auto& d : u.up_block_types) c.up_block_types.push_back(d == "CrossAttnUpBlock3D" ? "CrossAttnUpBlockMotion" : "UpBlockMotion");
  c.layers_per_block = u.layers_per_block;
  c.norm_num_groups = u.norm_num_groups;
  c.cross_attention_dim = text_dim;
  // SD1.5 counts heads (the same at every level); the first level's head width is teacher.head_dim.
  c.num_attention_heads = c.motion_num_attention_heads = std::max<int64_t>(1, u.block_out_channels[0] / t.head_dim);
  c.sample_size = height;
  return c;
}

models::VideoUnet make_teacher_unet(const TeacherSection& t, const std::string& kind, int64_t channels, int64_t height,
                                    int64_t text_dim) {
  if (kind == "unet_motion") return models::UnetMotion(teacher_unet_motion_config(t, channels, height, text_dim)).ptr();
  return models::Unet3D(teacher_unet_config(t, channels, height, text_dim)).ptr();
}

// Note [x0 teacher]
// The embedded teacher predicts x0 ("sample"), not v. Both see the same loss up to the cap: the
// v loss is (1 + SNR_t) * |x0_hat - x0|^2, and the x0 loss below weights its errors the same way.
// What differs is the function the network must compute. A v (or epsilon) model denoises through
// the skip path x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_hat, so at small t it must output the
// white noise in x_t exactly, a high-frequency function that a small network learns slowly; what
// it misses stays in x0_hat as speckle. An x0 model outputs the clean clip, smooth by
// construction. Measured on configs/tiny.toml (one-step x0 error / (1 - abar) on noised training
// clips at t = 19, 99, 299, 599): v after 800 steps 0.40, 0.25, 0.15, 0.081; v after 2400 steps
// 0.16, 0.073, 0.037, 0.023; x0 after 800 steps 0.38, 0.072, 0.029, 0.038 and after 2400 steps
// 0.19, 0.039, 0.015, 0.016 (plain x0 MSE, cap 1, after 800 steps: 0.70, 0.12, 0.039, 0.036: with
// no weight on small t the samples end blurred). The 2400-step samples have no speckle; shape
// accuracy on 32 held-out prompts went from 25% (v) to 38% (x0).
train::LossFn teacher_loss(models::VideoUnet unet, const diffusion::NoiseSchedule& schedule, torch::Tensor empty_text,
                           double caption_dropout, diffusion::Prediction prediction, double sample_weight_cap,
                           uint64_t seed, torch::Device device) {
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
    if (prediction == diffusion::Prediction::sample) {
      auto abar = schedule.abar(t).view({n, 1, 1, 1, 1});
      auto weight = (1 / (1 - abar)).clamp_max(sample_weight_cap);  // 1 + SNR_t, capped
      lt.loss = (weight * (pred.to(torch::kFloat32) - x0).pow(2)).mean();
      return lt;
    }
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

diffusion::DdimOptions teacher_ddim(diffusion::Prediction prediction, bool zero_terminal_snr) {
  diffusion::DdimOptions o;
  o.prediction = prediction;
  o.set_alpha_to_one = false;
  if (zero_terminal_snr) {
    o.timestep_spacing = "trailing";
  } else {
    o.steps_offset = 1;
  }
  return o;
}

diffusion::DdimOptions teacher_ddim(const TeacherSection& t) {
  return teacher_ddim(diffusion::parse_prediction(t.prediction), t.zero_terminal_snr);
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

TeacherSource find_teacher(const config::Config& cfg, const std::string& stage) {
  const auto& tm = cfg.models.teacher;
  const bool embedded = tm.path.empty();
  const std::filesystem::path unet =
      embedded ? std::filesystem::path(cfg.run.dir) / "teacher" / "unet" : std::filesystem::path(cfg.models.teacher.path);
  require<IoError>(std::filesystem::is_regular_file(unet / "config.json"), stage, ": no teacher at ", unet,
                   embedded ? " (models.teacher.path is empty, so the embedded teacher is used): run `mcm teacher` first"
                            : " (models.teacher.path): expected a diffusers unet/ folder with config.json");
  TeacherSource t = teacher_from_folder(unet, stage);
  if (!tm.motion_adapter.empty()) {
    t.motion_adapter = tm.motion_adapter;
    require<IoError>(std::filesystem::is_regular_file(t.motion_adapter / "config.json"), stage, ": models.teacher.motion_adapter = ",
                     t.motion_adapter, ": expected a diffusers MotionAdapter folder with config.json");
    t.checksum += "+adapter:" + models::folder_checksum(t.motion_adapter);
  } else {
    // The folder's class must be the configured kind: a ModelScope folder under kind = "unet_motion"
    // (or the reverse) is a configuration mistake, not something to guess around.
    const std::string cls = models::read_config_json(unet).value("_class_name", std::string("UNet3DConditionModel"));
    const std::string want = tm.kind == "unet_motion" ? "UNetMotionModel" : "UNet3DConditionModel";
    require<ConfigError>(cls == want, stage, ": models.teacher.kind = \"", tm.kind, "\" but ", unet / "config.json", " is a ",
                         cls, tm.kind == "unet_motion" && cls == "UNet2DConditionModel"
                                  ? " (an SD1.5 unet/: set models.teacher.motion_adapter)" : "");
  }
  if (!tm.beta_schedule.empty() && tm.beta_schedule != t.schedule.beta_schedule) {
    log::info(stage, ": models.teacher.beta_schedule = ", tm.beta_schedule, " replaces the scheduler's ",
              t.schedule.beta_schedule);
    t.schedule.beta_schedule = tm.beta_schedule;
    t.checksum += "+betas:" + tm.beta_schedule;
  }
  return t;
}

models::VideoUnet load_teacher_unet(const TeacherSource& t, torch::ScalarType dtype) {
  return models::load_video_unet(t.unet, dtype, t.motion_adapter);
}

TeacherSource teacher_from_folder(const std::filesystem::path& unet, const std::string& stage) {
  TeacherSource t;
  t.unet = unet;
  require<IoError>(std::filesystem::is_regular_file(t.unet / "config.json"), stage, ": no teacher at ", t.unet,
                   ": expected a diffusers unet/ folder with config.json");
  t.checksum = models::folder_checksum(t.unet);
  const std::filesystem::path sched = t.unet.parent_path() / "scheduler" / "scheduler_config.json";
  if (std::filesystem::is_regular_file(sched)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(fs::read_text(sched));
      t.schedule.num_train_timesteps = j.value("num_train_timesteps", t.schedule.num_train_timesteps);
      t.schedule.beta_start = j.value("beta_start", t.schedule.beta_start);
      t.schedule.beta_end = j.value("beta_end", t.schedule.beta_end);
      t.schedule.beta_schedule = j.value("beta_schedule", t.schedule.beta_schedule);
      t.schedule.rescale_zero_terminal_snr = j.value("rescale_betas_zero_snr", false);
      t.prediction_name = j.value("prediction_type", std::string("epsilon"));
    } catch (const nlohmann::json::exception& e) {
      throw DataError(cat(stage, ": teacher scheduler ", sched, ": ", e.what()));
    }
    t.prediction = diffusion::parse_prediction(t.prediction_name);
    require<DataError>(t.schedule.beta_schedule == "scaled_linear" || t.schedule.beta_schedule == "linear", stage, ": ",
                       sched, ": beta_schedule \"", t.schedule.beta_schedule, "\" is not supported (linear, scaled_linear)");
  } else {
    log::warn(stage, ": no ", sched.string(), ": assuming ModelScope's schedule (scaled_linear, epsilon prediction)");
  }
  return t;
}

}  // namespace mcm::stages
