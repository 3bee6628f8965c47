// The pixel rules of the caption-fidelity analyser on a plain buffer (Note [caption fidelity
// rules] in clip_analysis.cpp); caption_fidelity.hpp is the public face.
#pragma once
#include "eval/caption_fidelity.hpp"

namespace mcm::eval {

/// rgb: float [frames, height, width, 3] in 0..255. Throws DataError for a degenerate size.
ClipAnalysis analyse_rgb(const float* rgb, int frames, int width, int height);

}  // namespace mcm::eval
