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
  require<ConfigError>(eval_prompts >= 0, "distill.eval_prompts = ", eval_prompts, ": must be >= 0");
  require<ConfigError>(eval_guidance >= 1, "distill.eval_guidance = ", eval_guidance, ": must be >= 1 (1 = no guidance)");
}

}  // namespace mcm::stages
