#include "pipeline/eval_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {

void EvalSection::visit(config::FieldVisitor& v) {
  v("detector", detector);
  v("real_clips", real_clips);
  v("detector_steps", detector_steps);
  v("batch", batch);
  v("frame_detector", frame_detector);
  v("real_images", real_images);
  v("clip_model", clip_model);
  v("clip_vocab", clip_vocab);
  v("clip_resolution", clip_resolution);
}

void EvalSection::validate(const config::Config&) const {
  require<ConfigError>(real_clips >= 2, "eval.real_clips = ", real_clips, ": FVD needs at least 2 reference clips");
  config::require_positive(detector_steps, "eval.detector_steps");
  config::require_positive(batch, "eval.batch");
  require<ConfigError>(real_images >= 2, "eval.real_images = ", real_images, ": the frame distance needs at least 2 stills");
  require<ConfigError>(clip_model.empty() == clip_vocab.empty(), "eval.clip_model and eval.clip_vocab go together: ",
                       clip_model.empty() ? "eval.clip_vocab is set but eval.clip_model is not"
                                          : "eval.clip_model is set but eval.clip_vocab (bpe_simple_vocab_16e6.txt.gz) is not");
  config::require_positive(clip_resolution, "eval.clip_resolution");
}

}  // namespace mcm::stages
