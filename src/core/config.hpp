// The run configuration: one struct per TOML section, one `///` line per field. TOML files
// (base, then overlays) and `--set key=value` overrides are merged, bound strictly (unknown
// keys and wrong types are errors with file:line:column) and checked by one validate().
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcm::config {

struct RunSection {
  std::string dir = "runs/tiny";  ///< run folder: data, prep shards, checkpoints, manifest.json
  int64_t seed = 1234;            ///< master seed; every stage derives its streams from it
  int64_t threads = 0;            ///< torch/decoder threads per rank; 0 = cores / ranks on the node
  std::string log_level = "info"; ///< debug, info, warn or error
};

struct SynthSection {
  int64_t videos = 48;            ///< number of WebVid-style video samples
  int64_t video_shards = 4;       ///< number of video tar shards
  int64_t images = 32;            ///< number of LAION-style still images
  int64_t image_shards = 2;       ///< number of image tar shards
  int64_t width = 64;             ///< video width in pixels (even)
  int64_t height = 64;            ///< video height in pixels (even)
  int64_t frames = 24;            ///< frames per video
  int64_t fps = 8;                ///< video frame rate
  int64_t video_crf = 36;         ///< x264 CRF of the low-quality videos (0..51, higher = worse)
  double blur = 1.0;              ///< box-blur radius of the low-quality videos, pixels
  double noise = 6.0;             ///< std of the additive noise of the videos, 0..255 units
  bool watermark = true;          ///< overlay a semi-transparent watermark on the videos
  int64_t image_size = 64;        ///< side of the square high-quality images
  int64_t image_qscale = 2;       ///< MJPEG qscale of the images (2 best .. 31 worst)
  std::vector<std::string> broken = {};  ///< broken samples to plant, for tests (see synth.hpp)
};

struct PrepSection {
  std::string videos = "";        ///< video shards: a folder of *.tar or one .tar ("" = <run.dir>/data/videos)
  std::string images = "";        ///< image shards, likewise ("" = <run.dir>/data/images if present)
  bool encode_images = true;      ///< also turn the image shards into image latent shards
  int64_t frames = 8;             ///< frames per clip (T)
  int64_t stride = 2;             ///< frame stride inside a clip
  int64_t resolution = 32;        ///< side of the square clip after crop and resize
  std::string crop = "center";    ///< "center" or "random_resized" (one crop per clip, seeded by key)
  double crop_scale_min = 0.75;   ///< random_resized: smallest area fraction of videos
  double image_crop_scale_min = 0.5;  ///< random_resized: smallest area fraction of images
  int64_t encode_batch = 32;      ///< frames per autoencoder call (bounds memory)
};

struct AutoencoderSection {
  std::string kind = "pixel_shuffle";  ///< "pixel_shuffle" (exact, embedded default) or "autoencoder_kl"
  int64_t factor = 4;             ///< pixel_shuffle: spatial down-sampling factor
  double scaling_factor = 1.0;    ///< pixel_shuffle: latents = encode(x) * scaling_factor
  std::string path = "";          ///< autoencoder_kl: a diffusers `vae/` folder (its config gives the scaling)
  std::string mode = "mean";      ///< autoencoder_kl: "mean" of the posterior, or "sample" (seeded per clip)
};

struct TextEncoderSection {
  std::string kind = "word";      ///< "word" (frozen seeded embedding over synth's vocabulary) or "clip"
  std::string vocab = "";         ///< word: vocabulary file ("" = <run.dir>/data/vocab.txt)
  int64_t max_length = 16;        ///< word: tokens per caption, with padding and truncation
  int64_t dim = 64;               ///< word: embedding width
  int64_t seed = 7;               ///< word: seed of the frozen weights
  std::string path = "";          ///< clip: a transformers `text_encoder/` folder
  std::string tokenizer = "";     ///< clip: tokenizer folder ("" = the `tokenizer/` beside `path`)
};

struct ModelsSection {
  AutoencoderSection autoencoder;
  TextEncoderSection text_encoder;
};

struct Config {
  RunSection run;
  SynthSection synth;
  PrepSection prep;
  ModelsSection models;
  std::vector<std::string> sources;  ///< files and --set overrides it came from, in order

  /// The resolved configuration as JSON (for the manifest) and as TOML (for --dry-run).
  nlohmann::json to_json() const;
  std::string to_toml() const;
  /// Hash of the whole config, or of the listed top-level sections / dotted keys only.
  std::string hash(const std::vector<std::string>& parts = {}) const;
};

/// Loads files in order (later ones overlay earlier ones), applies `key=value` overrides,
/// binds strictly and validates. Throws ConfigError naming file:line:column and key.
Config load(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides);

/// Cross-field checks; throws ConfigError explaining the numbers.
void validate(const Config& cfg);

/// Edit distance, used to suggest the nearest known key.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace mcm::config
