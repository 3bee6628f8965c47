// [synth]: the bundled synthetic world, owned by the synth stage (Note [sections] in
// core/config.hpp). Registered in synth.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace mcm::stages {

struct SynthSection {
  static constexpr const char* kName = "synth";
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
  std::vector<std::string> broken = {};  ///< broken samples to plant, for tests (see broken_kinds())

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

/// Kinds of broken samples synth can plant (synth.broken).
const std::vector<std::string>& broken_kinds();

}  // namespace mcm::stages
