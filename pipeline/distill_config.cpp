#include "pipeline/distill_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {

void DistillSection::visit(config::FieldVisitor& v) {
  optim.visit(v);
  v("lora_rank", lora_rank);
  v("lora_alpha", lora_alpha);
  v("solver_steps", solver_steps);
  v("w_min", w_min);
  v("w_max", w_max);
  v("guidance_t_min", guidance_t_min);
  v("guidance_t_max", guidance_t_max);
  v("timestep_scaling", timestep_scaling);
  v("huber_c", huber_c);
  v("motion", motion);
  v("motion_hidden", motion_hidden);
  v("motion_groups", motion_groups);
  v("motion_ema", motion_ema);
  v("freq_cutoff", freq_cutoff);
  v("freq_order", freq_order);
  v("freq_band", freq_band);
  v("mixed_prob", mixed_prob);
  v("disc_weight", disc_weight);
  v("disc_backbone", disc_backbone);
  v("disc_backbone_path", disc_backbone_path);
  v("disc_lr", disc_lr);
  v("disc_frames", disc_frames);
  v("disc_cmap_dim", disc_cmap_dim);
  v("disc_virtual_batch", disc_virtual_batch);
  v("disc_timestep", disc_timestep);
  v("disc_image_size", disc_image_size);
  v("disc_real", disc_real);
  v("gp_weight", gp_weight);
  v("gp_raise", gp_raise);
  v("gp_threshold", gp_threshold);
  v("gp_raise_every", gp_raise_every);
  v("out", out);
  v("eval_prompts", eval_prompts);
  v("eval_guidance", eval_guidance);
}

void DistillSection::validate(const config::Config&) const {
  optim.validate("distill");
  config::require_positive(lora_rank, "distill.lora_rank");
  require<ConfigError>(lora_alpha > 0, "distill.lora_alpha = ", lora_alpha, ": must be > 0");
  config::require_positive(solver_steps, "distill.solver_steps");
  require<ConfigError>(w_min >= 0 && w_max >= w_min, "distill.w_min = ", w_min, ", distill.w_max = ", w_max,
                       ": need 0 <= w_min <= w_max");
  require<ConfigError>(guidance_t_min >= 0 && guidance_t_max >= guidance_t_min, "distill.guidance_t_min = ", guidance_t_min,
                       ", distill.guidance_t_max = ", guidance_t_max, ": need 0 <= guidance_t_min <= guidance_t_max");
  require<ConfigError>(timestep_scaling > 0, "distill.timestep_scaling = ", timestep_scaling, ": must be > 0");
  require<ConfigError>(huber_c > 0, "distill.huber_c = ", huber_c, ": must be > 0");
  config::require_one_of(motion, "distill.motion", {"learn", "raw", "diff", "freq"});
  config::require_positive(motion_hidden, "distill.motion_hidden");
  config::require_positive(motion_groups, "distill.motion_groups");
  require<ConfigError>(motion_hidden % motion_groups == 0, "distill.motion_hidden = ", motion_hidden,
                       ": must be a multiple of distill.motion_groups (", motion_groups, ")");
  require<ConfigError>(motion_ema >= 0 && motion_ema < 1, "distill.motion_ema = ", motion_ema, ": must be in [0, 1)");
  require<ConfigError>(freq_cutoff > 0, "distill.freq_cutoff = ", freq_cutoff, ": must be > 0");
  config::require_positive(freq_order, "distill.freq_order");
  config::require_one_of(freq_band, "distill.freq_band", {"low", "high"});
  require<ConfigError>(mixed_prob >= 0 && mixed_prob <= 1, "distill.mixed_prob = ", mixed_prob, ": must be in [0, 1]");
  require<ConfigError>(disc_weight >= 0, "distill.disc_weight = ", disc_weight, ": must be >= 0 (0 = no discriminator)");
  config::require_one_of(disc_backbone, "distill.disc_backbone", {"teacher", "dinov2"});
  require<ConfigError>(disc_backbone != "dinov2" || disc_weight == 0 || !disc_backbone_path.empty(),
                       "distill.disc_backbone = \"dinov2\" needs distill.disc_backbone_path (a transformers Dinov2Model "
                       "folder: config.json and model.safetensors)");
  require<ConfigError>(disc_lr > 0, "distill.disc_lr = ", disc_lr, ": must be > 0");
  config::require_positive(disc_frames, "distill.disc_frames");
  config::require_positive(disc_cmap_dim, "distill.disc_cmap_dim");
  config::require_positive(disc_virtual_batch, "distill.disc_virtual_batch");
  config::require_positive(disc_image_size, "distill.disc_image_size");
  require<ConfigError>(disc_timestep >= 0, "distill.disc_timestep = ", disc_timestep, ": must be >= 0");
  config::require_one_of(disc_real, "distill.disc_real", {"images", "clip"});
  {
    // Local batch norm groups the frames of one forward; groups that never straddle a micro-batch
    // boundary keep the result independent of how the global batch is split.
    const int64_t n = optim.micro_batch * disc_frames;
    require<ConfigError>(disc_weight == 0 || n <= disc_virtual_batch || n % disc_virtual_batch == 0,
                         "distill.disc_virtual_batch = ", disc_virtual_batch, " does not divide the ", n,
                         " frames of a micro-batch (distill.micro_batch x distill.disc_frames)");
  }
  require<ConfigError>(gp_weight >= 0 && gp_raise >= 1 && gp_threshold > 0 && gp_raise_every >= 1,
                       "distill.gp_weight / gp_raise / gp_threshold / gp_raise_every = ", gp_weight, " / ", gp_raise, " / ",
                       gp_threshold, " / ", gp_raise_every, ": need >= 0, >= 1, > 0, >= 1");
  require<ConfigError>(!out.empty() && out.find('/') == std::string::npos && out != "." && out != ".." &&
                           out != "teacher" && out != "prep" && out != "data" && out != "synth",
                       "distill.out = \"", out, "\": must be a folder name under run.dir, not a path or another stage's folder");
  require<ConfigError>(eval_prompts >= 0, "distill.eval_prompts = ", eval_prompts, ": must be >= 0");
  require<ConfigError>(eval_guidance >= 1, "distill.eval_guidance = ", eval_guidance, ": must be >= 1 (1 = no guidance)");
}

}  // namespace mcm::stages
