// Decoding videos and images from memory with FFmpeg: T frames at a stride from a start,
// one crop per clip (center or random-resized, seeded), scaled with swscale to RGB24. Videos are
// reached by seeking to the key frame before the window; the frames are exactly those a decode
// from the first frame would give (Note [frame identity] in media_decode.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace mcm::io {

/// Raised for a clip with fewer frames than the sampling window needs (skipped, not fatal).
class ClipTooShort : public DataError { using DataError::DataError; };

enum class CropMode { center, random_resized };

struct CropRect { int x = 0, y = 0, w = 0, h = 0; };

struct DecodeOptions {
  int64_t frames = 1;        ///< T
  int64_t stride = 1;        ///< source frames between samples
  int width = 0, height = 0; ///< output size
  CropMode crop = CropMode::center;
  double scale_min = 1.0;    ///< random_resized: smallest area fraction
  uint64_t seed = 0;         ///< per-clip seed: start frame and crop
  int64_t start = -1;        ///< first frame; -1 = uniform random in [0, length - max(span, window)] (seeded)
  int64_t window = 0;        ///< source frames a window occupies (MCM: frames x stride); 0 = the span (frames-1)*stride+1
  int64_t min_frames = 0;    ///< shortest usable video (ClipTooShort below); the window is always required
  int threads = 1;           ///< decoder threads (0 = FFmpeg's choice)
  bool seek = true;          ///< seek to the key frame before the window; false decodes from frame 0 (same frames)
};

/// How decode_clip reached the window (for tests and benchmarks; the frames are the same).
enum class DecodeMethod {
  from_start,   ///< decoded from the first frame (window at 0, seek = false, or seeking not trusted)
  seek,         ///< seeked to the key frame at or before the window, decoded forward
  single_pass,  ///< no length without decoding: one pass choosing the start as it goes (reservoir)
};
const char* to_string(DecodeMethod m);

struct DecodedClip {
  int width = 0, height = 0, frames = 0;
  std::vector<uint8_t> rgb;            ///< [frames, height, width, 3]
  std::vector<int64_t> frame_indices;  ///< source frame of each output frame
  /// Frames in the stream: counted from the demuxer's packets (exact), else the container's
  /// count, else decoded; 0 when unknown (an explicit start at 0 reads no further than the window).
  int64_t source_frames = 0;
  int source_width = 0, source_height = 0;
  double fps = 0.0;
  CropRect crop;
  DecodeMethod method = DecodeMethod::from_start;
  int64_t decoded_frames = 0;          ///< frames the decoder produced for this call (its cost)
};

/// Decodes a video (or a single image as a 1-frame video). `name` (shard:key.ext) goes into
/// every error. Throws ClipTooShort or DataError.
DecodedClip decode_clip(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& opt);

/// What a video is, from its container and one demuxing pass over its packets (no decoding).
struct MediaInfo {
  int64_t frames = 0;        ///< frames it decodes to (exact when timed; else the container's count; 0 unknown)
  bool timed = false;        ///< every frame has its own timestamp, so windows are reached by seeking
  int64_t key_frames = 0;    ///< packets flagged as key frames
  int width = 0, height = 0;
  double fps = 0.0;          ///< average frame rate
  double duration = 0.0;     ///< seconds (stream, else container; 0 unknown)
  std::string codec, container;
};

/// Probes without decoding a frame. Throws DataError (with `name`) for unreadable input.
MediaInfo probe_media(const uint8_t* data, size_t size, const std::string& name);

/// The crop window for a source size: center (largest window of the output aspect) or
/// torchvision's RandomResizedCrop (scale [scale_min, 1], ratio [3/4, 4/3], 10 tries).
CropRect choose_crop(int src_w, int src_h, int out_w, int out_h, CropMode mode, double scale_min, uint64_t seed);

}  // namespace mcm::io
