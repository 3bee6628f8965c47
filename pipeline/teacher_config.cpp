#include "pipeline/teacher_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {

void TeacherSection::visit(config::FieldVisitor& v) {
  optim.visit(v);
  v("caption_dropout", caption_dropout);
  v("prediction", prediction);
  v("sample_loss_weight_cap", sample_loss_weight_cap);
  v("zero_terminal_snr", zero_terminal_snr);
  v("channels", channels);
  v("max_channels", max_channels);
  v("levels", levels);
  v("cross_attention_levels", cross_attention_levels);
  v("layers_per_block", layers_per_block);
  v("head_dim", head_dim);
  v("norm_groups", norm_groups);
  v("eval_prompts", eval_prompts);
  v("eval_steps", eval_steps);
  v("eval_guidance", eval_guidance);
  v("eval_eta", eval_eta);
}

void TeacherSection::validate(const config::Config&) const {
  optim.validate("teacher");
  require<ConfigError>(caption_dropout >= 0 && caption_dropout < 1, "teacher.caption_dropout = ", caption_dropout,
                       ": must be in [0, 1)");
  config::require_one_of(prediction, "teacher.prediction", {"epsilon", "v_prediction", "sample"});
  require<ConfigError>(!zero_terminal_snr || prediction != "epsilon", "teacher.zero_terminal_snr = true needs ",
                       "teacher.prediction = \"v_prediction\" or \"sample\" (epsilon is undefined at zero SNR)");
  require<ConfigError>(sample_loss_weight_cap >= 1, "teacher.sample_loss_weight_cap = ", sample_loss_weight_cap,
                       ": must be >= 1 (1 = plain x0 MSE)");
  config::require_positive(channels, "teacher.channels");
  require<ConfigError>(max_channels == 0 || max_channels >= channels, "teacher.max_channels = ", max_channels,
                       ": must be 0 (no cap) or at least teacher.channels (", channels, ")");
  require<ConfigError>(levels >= 1 && levels <= 4, "teacher.levels = ", levels, ": must be in 1..4");
  require<ConfigError>(cross_attention_levels >= 0 && cross_attention_levels <= levels, "teacher.cross_attention_levels = ",
                       cross_attention_levels, ": must be in 0..teacher.levels (", levels, ")");
  config::require_positive(layers_per_block, "teacher.layers_per_block");
  config::require_positive(head_dim, "teacher.head_dim");
  config::require_positive(norm_groups, "teacher.norm_groups");
  require<ConfigError>(channels % norm_groups == 0 && channels % head_dim == 0, "teacher.channels = ", channels,
                       ": must be a multiple of teacher.norm_groups (", norm_groups, ") and teacher.head_dim (", head_dim, ")");
  require<ConfigError>(eval_prompts >= 0, "teacher.eval_prompts = ", eval_prompts, ": must be >= 0");
  config::require_positive(eval_steps, "teacher.eval_steps");
  require<ConfigError>(eval_eta >= 0 && eval_eta <= 1, "teacher.eval_eta = ", eval_eta, ": must be in [0, 1]");
  require<ConfigError>(eval_guidance >= 1, "teacher.eval_guidance = ", eval_guidance, ": must be >= 1 (1 = no guidance)");
}

}  // namespace mcm::stages
