// Encoding RGB24 frames with FFmpeg into memory: H.264 mp4 (libx264), GIF previews, JPEG and PNG stills.
#pragma once
#include <cstdint>
#include <vector>

namespace mcm::io {

struct VideoEncodeOptions {
  int fps = 8;
  int crf = 23;          ///< x264 constant rate factor (0..51)
};

/// rgb: [frames, height, width, 3]. Width and height must be even (4:2:0). The moov atom
/// follows the media data (faststart would need a second pass over a real file).
std::vector<uint8_t> encode_mp4(const uint8_t* rgb, int frames, int width, int height, const VideoEncodeOptions& opt);
/// Animated GIF (palette rgb8), looping.
std::vector<uint8_t> encode_gif(const uint8_t* rgb, int frames, int width, int height, int fps);
/// Baseline JPEG via FFmpeg's MJPEG encoder; qscale 2 (best) .. 31.
std::vector<uint8_t> encode_jpeg(const uint8_t* rgb, int width, int height, int qscale);
/// Lossless PNG (RGB24) via FFmpeg's PNG encoder: plots and contact sheets.
std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height);

}  // namespace mcm::io
