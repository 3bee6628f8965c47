#include "pipeline/eval_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {

void EvalSection::visit(config::FieldVisitor& v) {
  v("detector", detector);
  v("real_clips", real_clips);
  v("detector_steps", detector_steps);
  v("batch", batch);
}

void EvalSection::validate(const config::Config&) const {
  require<ConfigError>(real_clips >= 2, "eval.real_clips = ", real_clips, ": FVD needs at least 2 reference clips");
  config::require_positive(detector_steps, "eval.detector_steps");
  config::require_positive(batch, "eval.batch");
}

}  // namespace mcm::stages
