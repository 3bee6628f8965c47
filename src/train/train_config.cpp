#include "train/train_config.hpp"

#include "core/error.hpp"

namespace mcm::train {

MCM_CONFIG_SECTION(TrainSection);

void TrainSection::visit(config::FieldVisitor& v) {
  v("precision", precision);
  v("deterministic", deterministic);
  v("comm_timeout_s", comm_timeout_s);
  v("bucket_mb", bucket_mb);
  v("first_bucket_mb", first_bucket_mb);
  v("checkpoint_every", checkpoint_every);
  v("keep_checkpoints", keep_checkpoints);
  v("max_bad_steps", max_bad_steps);
  v("prefetch", prefetch);
  v("log_every", log_every);
  v("preload", preload);
  v("fused_optimizer", fused_optimizer);
}

void TrainSection::validate(const config::Config&) const {
  config::require_one_of(precision, "train.precision", {"auto", "bf16", "fp16", "fp32"});
  require<ConfigError>(comm_timeout_s > 0, "train.comm_timeout_s = ", comm_timeout_s, ": must be > 0");
  require<ConfigError>(bucket_mb > 0 && first_bucket_mb > 0, "train.bucket_mb = ", bucket_mb,
                       ", train.first_bucket_mb = ", first_bucket_mb, ": must be > 0");
  config::require_positive(checkpoint_every, "train.checkpoint_every");
  config::require_positive(keep_checkpoints, "train.keep_checkpoints");
  config::require_positive(max_bad_steps, "train.max_bad_steps");
  require<ConfigError>(prefetch >= 0, "train.prefetch = ", prefetch, ": must be >= 0");
  config::require_positive(log_every, "train.log_every");
}

void OptimConfig::visit(config::FieldVisitor& v) {
  v("steps", steps);
  v("batch", batch);
  v("micro_batch", micro_batch);
  v("lr", lr);
  v("lr_min", lr_min);
  v("warmup_steps", warmup_steps);
  v("weight_decay", weight_decay);
  v("adam_beta1", adam_beta1);
  v("adam_beta2", adam_beta2);
  v("adam_eps", adam_eps);
  v("grad_clip", grad_clip);
  v("ema_decay", ema_decay);
}

void OptimConfig::validate(const std::string& s) const {
  config::require_positive(steps, s + ".steps");
  config::require_positive(batch, s + ".batch");
  config::require_positive(micro_batch, s + ".micro_batch");
  require<ConfigError>(batch % micro_batch == 0, s, ".batch = ", batch, " is not a multiple of ", s,
                       ".micro_batch = ", micro_batch);
  require<ConfigError>(lr > 0 && lr_min >= 0 && lr_min <= lr, s, ".lr = ", lr, ", ", s, ".lr_min = ", lr_min,
                       ": need 0 <= lr_min <= lr and lr > 0");
  require<ConfigError>(warmup_steps >= 0, s, ".warmup_steps = ", warmup_steps, ": must be >= 0");
  require<ConfigError>(weight_decay >= 0, s, ".weight_decay = ", weight_decay, ": must be >= 0");
  require<ConfigError>(adam_beta1 >= 0 && adam_beta1 < 1 && adam_beta2 >= 0 && adam_beta2 < 1, s,
                       ".adam_beta1/adam_beta2 = ", adam_beta1, "/", adam_beta2, ": must be in [0, 1)");
  require<ConfigError>(adam_eps > 0, s, ".adam_eps = ", adam_eps, ": must be > 0");
  require<ConfigError>(grad_clip >= 0, s, ".grad_clip = ", grad_clip, ": must be >= 0 (0 = off)");
  require<ConfigError>(ema_decay >= 0 && ema_decay < 1, s, ".ema_decay = ", ema_decay, ": must be in [0, 1) (0 = off)");
}

std::string resolve_precision(const TrainSection& t, bool cuda) {
  if (t.precision == "auto") return cuda ? "bf16" : "fp32";
  return t.precision;
}

}  // namespace mcm::train
