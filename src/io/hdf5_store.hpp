// HDF5 latent shards (DESIGN.md "Formats"): latents [N, C, T, H, W] float16 with one chunk per
// clip (images: [N, C, H, W]), text_emb [N, L, D] float16, caption and key as UTF-8 strings,
// frame_indices [N, T]. Written to path.tmp and committed by rename; readable by h5py as is.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace mcm::io {

/// Move-only owner of an HDF5 identifier; closes it with the right H5?close. Empty when moved from.
class H5Id {
 public:
  H5Id() = default;
  explicit H5Id(hid_t id) : id_(id) {}
  ~H5Id() { reset(); }
  H5Id(H5Id&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) { reset(); id_ = o.id_; o.id_ = H5I_INVALID_HID; }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset() noexcept;

 private:
  hid_t id_ = H5I_INVALID_HID;
};

/// Throws IoError("<what>: <HDF5 error stack>") when id/status < 0.
hid_t h5_check(hid_t id, const std::string& what);
/// HDF5 library version, e.g. "HDF5 1.10.8".
std::string hdf5_version();

using AttrValue = std::variant<int64_t, double, std::string>;

struct LatentShardSpec {
  std::vector<hsize_t> latent_shape;  ///< per sample: {C, T, H, W} or {C, H, W}
  hsize_t text_len = 0, text_dim = 0; ///< L, D
  hsize_t frames = 0;                 ///< T of frame_indices (0 = no frame_indices dataset)
};

/// Appends samples to a new shard; finish() writes attributes, closes and renames into place.
/// Destroyed without finish(), it removes the temporary file (nothing half-written survives).
class LatentShardWriter {
 public:
  LatentShardWriter(std::filesystem::path path, LatentShardSpec spec);
  ~LatentShardWriter();
  LatentShardWriter(const LatentShardWriter&) = delete;
  LatentShardWriter& operator=(const LatentShardWriter&) = delete;

  /// latent and text_emb are IEEE half bit patterns of the spec's shapes.
  void append(const uint16_t* latent, const uint16_t* text_emb, const std::string& caption, const std::string& key,
              const std::vector<int64_t>& frame_indices = {});
  void set_attr(const std::string& name, AttrValue value) { attrs_[name] = std::move(value); }
  void finish();
  hsize_t size() const { return n_; }

 private:
  void close_all() noexcept;
  std::filesystem::path path_, tmp_;
  LatentShardSpec spec_;
  H5Id file_, latents_, text_, caption_, key_, frames_;
  std::map<std::string, AttrValue> attrs_;
  hsize_t n_ = 0;
  bool finished_ = false;
};

/// Reads a shard (tests, the trainer's loader).
class LatentShardReader {
 public:
  explicit LatentShardReader(const std::filesystem::path& path);
  hsize_t size() const { return n_; }
  std::vector<hsize_t> latent_shape() const;  ///< per sample
  std::vector<hsize_t> text_shape() const;    ///< {L, D}
  std::vector<uint16_t> latent(hsize_t i) const;
  std::vector<uint16_t> text_emb(hsize_t i) const;
  std::vector<std::string> strings(const std::string& dataset) const;
  /// Row i of the float16 dataset `dataset` ("latents", "text_emb") into `out`, which holds `count`
  /// values (the per-sample size, else IoError): no allocation, for the training loader.
  void read_half_row(const std::string& dataset, hsize_t i, uint16_t* out, size_t count) const;
  /// Element i of a string dataset ("caption", "key") without reading the whole column.
  std::string string_at(const std::string& dataset, hsize_t i) const;
  AttrValue attr(const std::string& name) const;

 private:
  std::filesystem::path path_;
  H5Id file_;
  hsize_t n_ = 0;
};

/// Decoded samples of `mcm sample` (README "mcm sample"): videos [N, T, H, W, 3] uint8 RGB, one
/// chunk per sample; prompt (UTF-8), prompt_index and seed (int64: which of the prompt's seeds).
/// Written to path.tmp and committed by rename on finish(); readable by h5py as is.
class VideoSampleWriter {
 public:
  VideoSampleWriter(std::filesystem::path path, hsize_t frames, hsize_t height, hsize_t width);
  ~VideoSampleWriter();
  VideoSampleWriter(const VideoSampleWriter&) = delete;
  VideoSampleWriter& operator=(const VideoSampleWriter&) = delete;
  /// video: frames x height x width x 3 bytes.
  void append(const uint8_t* video, const std::string& prompt, int64_t prompt_index, int64_t seed);
  void set_attr(const std::string& name, AttrValue value) { attrs_[name] = std::move(value); }
  void finish();
  hsize_t size() const { return n_; }

 private:
  void close_all() noexcept;
  std::filesystem::path path_, tmp_;
  H5Id file_, videos_, prompt_, index_, seed_;
  std::map<std::string, AttrValue> attrs_;
  hsize_t n_ = 0;
  bool finished_ = false;
};

/// Reads a VideoSampleWriter file row by row.
class VideoSampleReader {
 public:
  explicit VideoSampleReader(const std::filesystem::path& path);
  hsize_t size() const { return n_; }
  const std::vector<hsize_t>& video_shape() const { return shape_; }  ///< {T, H, W, 3}
  std::vector<uint8_t> video(hsize_t i) const;
  std::string prompt(hsize_t i) const;
  int64_t prompt_index(hsize_t i) const;
  int64_t seed(hsize_t i) const;
  AttrValue attr(const std::string& name) const;

 private:
  std::filesystem::path path_;
  H5Id file_;
  std::vector<hsize_t> shape_;
  hsize_t n_ = 0;
};

}  // namespace mcm::io
