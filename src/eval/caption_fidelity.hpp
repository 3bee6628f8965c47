// Caption fidelity in the role of CLIP score for the synthetic world: does a clip show the
// captioned colour, shape and direction of motion? A rule-based analyser of the pixels
// (Note [caption fidelity rules] in clip_analysis.cpp) and a score that accumulates its answers.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace mcm::eval {

/// The attributes a synth caption names; an empty field means "not found".
struct ClipAttributes {
  std::string colour, shape, direction;
};

/// From a synth caption ("a red circle moves left slowly on a dark background"): the words of
/// the world's vocabularies, case-insensitive. Throws DataError (quoting the caption) when a
/// field is missing or named twice with different values.
ClipAttributes parse_caption(const std::string& caption);

/// What the pixels of one clip show.
struct ClipAnalysis {
  ClipAttributes found;              ///< empty fields where no object (or no motion) was found
  double foreground_fraction = 0;    ///< mean share of each frame covered by the object, 0..1
  // Diagnostics.
  double motion_x = 0, motion_y = 0; ///< summed wrap-aware displacement, fractions of the frame (+x right, +y down)
  double triangle_score = 0;         ///< median 3rd angular harmonic of the mask (0 circle/square/diamond, ~0.66 triangle)
  double corner_score = 0;           ///< median signed 4th harmonic (-0.43 square, 0 circle, +0.43 diamond)
  int frames_used = 0;               ///< frames where one coherent object was found
  std::string detail;                ///< human-readable reasons, per-frame votes
};

/// frames: float [T, 3, H, W] in [-1, 1] (any floating dtype, any device), or uint8 [T, H, W, 3].
/// Throws DataError for another shape or dtype, or a non-finite value (a broken generator).
ClipAnalysis analyse_clip(const at::Tensor& frames);
/// rgb: uint8 [frames, height, width, 3] (the layout of io::decode_clip and synth::render_frame).
ClipAnalysis analyse_clip(const uint8_t* rgb, int frames, int width, int height);

/// Accumulates analyses against the captions they were generated from.
struct FidelityScore {
  void add(const ClipAttributes& expected, const ClipAnalysis& found);
  int64_t n = 0, colour = 0, shape = 0, direction = 0, all = 0;  ///< clips, and clips correct per field
  /// Correct share of "colour", "shape", "direction" or "all" (0 when empty). Throws Error for another name.
  double accuracy(const std::string& field) const;
  /// Counts, accuracies, chance levels (1/6, 1/4, 1/4, 1/96), per field the confusion
  /// expected -> found -> count ("none" when nothing was found), the caption-blind rate of the
  /// same samples ("blind") and the p-value against max(chance, blind) (Note [clearly above
  /// chance] in caption_fidelity.cpp).
  nlohmann::json to_json() const;
  /// confusion[field][expected][found]
  std::map<std::string, std::map<std::string, std::map<std::string, int64_t>>> confusion;
};

/// One-sided binomial tail P(X >= k) for X ~ Binomial(n, p), computed in log space.
double binomial_tail(int64_t k, int64_t n, double p);

}  // namespace mcm::eval
