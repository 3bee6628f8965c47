// Decoding videos and images from memory with FFmpeg: T frames at a stride from a start,
// one crop per clip (center or random-resized, seeded), scaled with swscale to RGB24.
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
  int64_t start = -1;        ///< first frame; -1 = uniform random in the valid range (seeded)
  int threads = 1;           ///< decoder threads (0 = FFmpeg's choice)
};

struct DecodedClip {
  int width = 0, height = 0, frames = 0;
  std::vector<uint8_t> rgb;            ///< [frames, height, width, 3]
  std::vector<int64_t> frame_indices;  ///< source frame of each output frame
  int64_t source_frames = 0;           ///< frames in the stream (container count or decoded)
  int source_width = 0, source_height = 0;
  double fps = 0.0;
  CropRect crop;
};

/// Decodes a video (or a single image as a 1-frame video). `name` (shard:key.ext) goes into
/// every error. Throws ClipTooShort or DataError.
DecodedClip decode_clip(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& opt);

/// The crop window for a source size: center (largest window of the output aspect) or
/// torchvision's RandomResizedCrop (scale [scale_min, 1], ratio [3/4, 4/3], 10 tries).
CropRect choose_crop(int src_w, int src_h, int out_w, int out_h, CropMode mode, double scale_min, uint64_t seed);

}  // namespace mcm::io
