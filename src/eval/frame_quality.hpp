// Frame quality known by construction in the synthetic world (Note [frame quality rules] in
// frame_quality.cpp): whether a frame carries the stock-footage watermark that synth stamps on
// every training video and never on the high-quality stills, and how sharp it is. Together with
// the Fréchet distance of frame features to the image set's (eval.cpp), these say whether a
// generator's frames look like the clean images or like the degraded videos it learned from.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

namespace mcm::eval {

struct FrameQuality {
  bool watermark = false;
  double lift = 0;       ///< banner luminance over its surroundings' (0..255 units)
  double expected = 0;   ///< the lift synth's banner gives on these surroundings
  double sharpness = 0;  ///< mean squared 4-neighbour Laplacian of luminance (0..255 units)
};

/// rgb: uint8 [height, width, 3] of a square (centre-cropped) frame. DataError for frames smaller
/// than 8 x 8, where the banner covers under one row.
FrameQuality analyse_frame(const uint8_t* rgb, int width, int height);

/// Accumulates frame analyses: watermark rate and mean sharpness.
struct FrameQualityStats {
  void add(const FrameQuality& q);
  void merge(const FrameQualityStats& o);
  int64_t frames = 0, watermarked = 0;
  double sharpness_sum = 0;
  double watermark_rate() const { return frames ? static_cast<double>(watermarked) / static_cast<double>(frames) : 0.0; }
  double sharpness() const { return frames ? sharpness_sum / static_cast<double>(frames) : 0.0; }
  nlohmann::json to_json() const;
  static FrameQualityStats from_json(const nlohmann::json& j);
};

/// Every frame of uint8 clips [N, T, H, W, 3] stored contiguously.
FrameQualityStats analyse_frames(const uint8_t* rgb, int64_t frames, int width, int height);

}  // namespace mcm::eval
