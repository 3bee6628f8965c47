// The synthetic world of the embedded default: coloured shapes moving on a background.
// Videos are rendered low-quality (aliased, blurred, noisy, watermarked) like WebVid; stills
// are rendered high-quality (supersampled, clean) like LAION-aesthetics. Ground truth travels
// in each sample's JSON so eval can check caption fidelity and frame quality. A library of its
// own (mcm_world) so eval can read the world's ground truth without linking the stages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.hpp"

namespace mcm::synth {

struct Scene {
  std::string shape, colour, direction, speed, background;
  double x0 = 0, y0 = 0;  ///< start centre, fraction of the frame
  double size = 0.25;     ///< shape radius as a fraction of min(width, height)
};

/// Attribute vocabularies, in a fixed order.
const std::vector<std::string>& shapes();
const std::vector<std::string>& colours();
const std::vector<std::string>& directions();
const std::vector<std::string>& speeds();
const std::vector<std::string>& backgrounds();
/// Every word a caption can use, after the four special tokens (the text encoder's vocab).
std::vector<std::string> vocabulary();

/// An sRGB colour in 0..255 units.
struct Rgb { double r = 0, g = 0, b = 0; };
/// The palette: the RGB of a colour name (colours()) and of a background name (backgrounds()).
/// Throws DataError for a name outside the vocabulary.
Rgb colour_rgb(const std::string& colour);
Rgb background_rgb(const std::string& background);
/// Whether shape-local point (u, v), in units of the radius (v grows downwards), is inside
/// `shape`. Throws DataError for a name outside shapes().
bool shape_contains(const std::string& shape, double u, double v);
/// Centre of the shape in frame t, as a fraction of the frame in [0, 1) (wrapped).
void centre_at(const Scene& s, int t, double& x, double& y);

/// A scene drawn from its stream (deterministic, the same with any standard library).
Scene draw_scene(const rng::Key& key);
/// "a red circle moves left slowly on a dark background"
std::string video_caption(const Scene& s);
/// "a red circle on a dark background"
std::string image_caption(const Scene& s);

struct Degradation {
  double blur = 0;      ///< box-blur radius, pixels
  double noise = 0;     ///< noise std, 0..255
  bool watermark = false;
  rng::Key noise_key{}; ///< noise stream; frame t uses elements [t*w*h*3, (t+1)*w*h*3)
};

/// Renders frame t of a scene ([h, w, 3] RGB). Supersampling `ss` x `ss` per pixel.
void render_frame(const Scene& s, int t, int w, int h, int ss, uint8_t* rgb);
/// Applies blur, noise and the watermark in place to one frame.
void degrade(uint8_t* rgb, int w, int h, const Degradation& d, int frame_index);

}  // namespace mcm::synth
