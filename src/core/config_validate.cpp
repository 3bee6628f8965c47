// validate(): the single place for range and cross-field rules. Messages explain the numbers.
#include <set>

#include "core/config.hpp"
#include "core/error.hpp"

namespace mcm::config {
namespace {
void positive(int64_t v, const char* key) {
  require<ConfigError>(v > 0, key, " = ", v, ": must be > 0");
}
void one_of(const std::string& v, const char* key, const std::set<std::string>& allowed) {
  if (allowed.count(v)) return;
  std::string list;
  for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(cat(key, " = \"", v, "\": expected one of ", list));
}
}  // namespace

// Kinds of broken samples synth can plant (kept here so config and synth agree).
const std::set<std::string>& broken_kinds() {
  static const std::set<std::string> k = {"corrupt_mp4", "short_clip", "missing_caption", "bad_utf8_caption",
                                          "no_media", "zero_byte_jpg", "truncated_jpg", "truncated_tar"};
  return k;
}

void validate(const Config& c) {
  require<ConfigError>(!c.run.dir.empty(), "run.dir: must not be empty");
  require<ConfigError>(c.run.threads >= 0, "run.threads = ", c.run.threads, ": must be >= 0 (0 = automatic)");
  one_of(c.run.log_level, "run.log_level", {"debug", "info", "warn", "error"});

  const auto& s = c.synth;
  positive(s.videos, "synth.videos");
  positive(s.video_shards, "synth.video_shards");
  require<ConfigError>(s.video_shards <= s.videos, "synth.video_shards = ", s.video_shards,
                       " exceeds synth.videos = ", s.videos, ": every shard needs at least one video");
  require<ConfigError>(s.images >= 0, "synth.images = ", s.images, ": must be >= 0");
  positive(s.image_shards, "synth.image_shards");
  require<ConfigError>(s.images == 0 || s.image_shards <= s.images, "synth.image_shards = ", s.image_shards,
                       " exceeds synth.images = ", s.images);
  require<ConfigError>(s.width >= 16 && s.height >= 16 && s.width % 2 == 0 && s.height % 2 == 0,
                       "synth.width x synth.height = ", s.width, "x", s.height,
                       ": both must be even and >= 16 (H.264 4:2:0)");
  positive(s.frames, "synth.frames");
  positive(s.fps, "synth.fps");
  require<ConfigError>(s.video_crf >= 0 && s.video_crf <= 51, "synth.video_crf = ", s.video_crf, ": x264 CRF is 0..51");
  require<ConfigError>(s.blur >= 0 && s.noise >= 0, "synth.blur and synth.noise must be >= 0");
  require<ConfigError>(s.image_size >= 16, "synth.image_size = ", s.image_size, ": must be >= 16");
  require<ConfigError>(s.image_qscale >= 2 && s.image_qscale <= 31, "synth.image_qscale = ", s.image_qscale,
                       ": MJPEG qscale is 2..31");
  for (auto& b : s.broken) one_of(b, "synth.broken", broken_kinds());

  const auto& p = c.prep;
  positive(p.frames, "prep.frames");
  positive(p.stride, "prep.stride");
  positive(p.resolution, "prep.resolution");
  positive(p.encode_batch, "prep.encode_batch");
  one_of(p.crop, "prep.crop", {"center", "random_resized"});
  require<ConfigError>(p.crop_scale_min > 0 && p.crop_scale_min <= 1, "prep.crop_scale_min = ", p.crop_scale_min,
                       ": must be in (0, 1]");
  require<ConfigError>(p.image_crop_scale_min > 0 && p.image_crop_scale_min <= 1,
                       "prep.image_crop_scale_min = ", p.image_crop_scale_min, ": must be in (0, 1]");
  int64_t span = (p.frames - 1) * p.stride + 1;
  // Only when prep reads synth's own shards; real shards have their own lengths.
  require<ConfigError>(!p.videos.empty() || span <= s.frames, "prep.frames = ", p.frames, " at prep.stride = ", p.stride, " spans (",
                       p.frames, "-1)*", p.stride, "+1 = ", span, " source frames, but synth.frames = ", s.frames,
                       ": every synthetic clip would be skipped as too short");

  const auto& ae = c.models.autoencoder;
  one_of(ae.kind, "models.autoencoder.kind", {"pixel_shuffle", "autoencoder_kl"});
  if (ae.kind == "pixel_shuffle") {
    positive(ae.factor, "models.autoencoder.factor");
    require<ConfigError>(p.resolution % ae.factor == 0, "prep.resolution = ", p.resolution,
                         " is not divisible by models.autoencoder.factor = ", ae.factor, " (remainder ",
                         p.resolution % ae.factor, ")");
    require<ConfigError>(ae.scaling_factor > 0, "models.autoencoder.scaling_factor must be > 0");
  } else {
    // The down-sampling factor comes from the VAE's config.json; prep checks the resolution
    // against it when it loads the model.
    require<ConfigError>(!ae.path.empty(), "models.autoencoder.path: required for kind = \"autoencoder_kl\" "
                         "(a diffusers vae/ folder)");
    one_of(ae.mode, "models.autoencoder.mode", {"mean", "sample"});
  }

  const auto& te = c.models.text_encoder;
  one_of(te.kind, "models.text_encoder.kind", {"word", "clip"});
  require<ConfigError>(te.kind != "clip" || !te.path.empty(),
                       "models.text_encoder.path: required for kind = \"clip\" (a transformers text_encoder/ folder)");
  require<ConfigError>(te.max_length >= 2, "models.text_encoder.max_length = ", te.max_length,
                       ": needs room for the begin and end tokens (>= 2)");
  positive(te.dim, "models.text_encoder.dim");
}

}  // namespace mcm::config
