// [prep] fields and rules. The window rule follows MCM's loader (MCM.md "Data"): a window covers
// frames x stride source frames, a video needs at least that many, and its start is uniform
// over the positions where the whole window fits.
#include "data_prep/prep_config.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "data_prep/synth_config.hpp"

namespace mcm::stages {
using config::require_one_of;
using config::require_positive;

void PrepSection::visit(config::FieldVisitor& v) {
  v("videos", videos);
  v("images", images);
  v("encode_images", encode_images);
  v("frames", frames);
  v("stride", stride);
  v("resolution", resolution);
  v("crop", crop);
  v("crop_scale_min", crop_scale_min);
  v("image_crop_scale_min", image_crop_scale_min);
  v("encode_batch", encode_batch);
  v("batch_clips", batch_clips);
  v("clips_per_video", clips_per_video);
  v("min_frames", min_frames);
  v("decode_workers", decode_workers);
  v("dtype", dtype);
  v("max_failed_shards", max_failed_shards);
}

void PrepSection::validate(const config::Config& cfg) const {
  require_positive(frames, "prep.frames");
  require_positive(stride, "prep.stride");
  require_positive(resolution, "prep.resolution");
  require_positive(encode_batch, "prep.encode_batch");
  require_positive(batch_clips, "prep.batch_clips");
  require_positive(clips_per_video, "prep.clips_per_video");
  require_one_of(crop, "prep.crop", {"center", "random_resized"});
  require_one_of(dtype, "prep.dtype", {"auto", "bfloat16", "float16", "float32"});
  require<ConfigError>(crop_scale_min > 0 && crop_scale_min <= 1, "prep.crop_scale_min = ", crop_scale_min,
                       ": must be in (0, 1]");
  require<ConfigError>(image_crop_scale_min > 0 && image_crop_scale_min <= 1, "prep.image_crop_scale_min = ",
                       image_crop_scale_min, ": must be in (0, 1]");
  require<ConfigError>(min_frames >= 0, "prep.min_frames = ", min_frames, ": must be >= 0 (0 = frames x stride)");
  require<ConfigError>(decode_workers >= 0 && decode_workers <= 1024, "prep.decode_workers = ", decode_workers,
                       ": must be in 0..1024 (0 = run.threads)");
  require<ConfigError>(max_failed_shards >= 0, "prep.max_failed_shards = ", max_failed_shards, ": must be >= 0");
  const int64_t window = frames * stride, need = std::max(window, min_frames);
  // Only when prep reads synth's own shards; real shards have their own lengths.
  if (const auto* s = cfg.find<SynthSection>(); s && videos.empty())
    require<ConfigError>(need <= s->frames, "prep.frames = ", frames, " at prep.stride = ", stride, " needs videos of ",
                         need, " frames (frames x stride = ", window, ", prep.min_frames = ", min_frames,
                         "), but synth.frames = ", s->frames, ": every synthetic clip would be skipped as too short");
  const auto& ae = cfg.models.autoencoder;
  if (ae.kind == "pixel_shuffle")
    require<ConfigError>(ae.factor <= 0 || resolution % ae.factor == 0, "prep.resolution = ", resolution,
                         " is not divisible by models.autoencoder.factor = ", ae.factor, " (remainder ",
                         resolution % ae.factor, ")");
}

}  // namespace mcm::stages
