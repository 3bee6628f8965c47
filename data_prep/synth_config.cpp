// [synth] fields and rules.
#include "data_prep/synth_config.hpp"

#include "core/error.hpp"

namespace mcm::stages {
using config::require_one_of;
using config::require_positive;

const std::vector<std::string>& broken_kinds() {
  static const std::vector<std::string> k = {"bad_utf8_caption", "corrupt_mp4", "missing_caption", "no_media",
                                             "short_clip", "truncated_jpg", "truncated_tar", "zero_byte_jpg"};
  return k;
}

void SynthSection::visit(config::FieldVisitor& v) {
  v("videos", videos);
  v("video_shards", video_shards);
  v("images", images);
  v("image_shards", image_shards);
  v("width", width);
  v("height", height);
  v("frames", frames);
  v("fps", fps);
  v("video_crf", video_crf);
  v("blur", blur);
  v("noise", noise);
  v("watermark", watermark);
  v("image_size", image_size);
  v("image_qscale", image_qscale);
  v("broken", broken);
}

void SynthSection::validate(const config::Config&) const {
  require_positive(videos, "synth.videos");
  require_positive(video_shards, "synth.video_shards");
  require<ConfigError>(video_shards <= videos, "synth.video_shards = ", video_shards, " exceeds synth.videos = ", videos,
                       ": every shard needs at least one video");
  require<ConfigError>(images >= 0, "synth.images = ", images, ": must be >= 0");
  require_positive(image_shards, "synth.image_shards");
  require<ConfigError>(images == 0 || image_shards <= images, "synth.image_shards = ", image_shards,
                       " exceeds synth.images = ", images);
  require<ConfigError>(width >= 16 && height >= 16 && width % 2 == 0 && height % 2 == 0, "synth.width x synth.height = ",
                       width, "x", height, ": both must be even and >= 16 (H.264 4:2:0)");
  require_positive(frames, "synth.frames");
  require_positive(fps, "synth.fps");
  require<ConfigError>(video_crf >= 0 && video_crf <= 51, "synth.video_crf = ", video_crf, ": x264 CRF is 0..51");
  require<ConfigError>(blur >= 0 && noise >= 0, "synth.blur and synth.noise must be >= 0");
  require<ConfigError>(image_size >= 16, "synth.image_size = ", image_size, ": must be >= 16");
  require<ConfigError>(image_qscale >= 2 && image_qscale <= 31, "synth.image_qscale = ", image_qscale,
                       ": MJPEG qscale is 2..31");
  for (auto& b : broken) require_one_of(b, "synth.broken", broken_kinds());
}

}  // namespace mcm::stages
