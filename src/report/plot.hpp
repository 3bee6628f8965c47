// Raster plots for the report, drawn into an RGB buffer and written as PNG (io::encode_png): line
// plots with markers, axes with numeric ticks (linear, or log2 for step counts), a legend and a
// title in a built-in 3 x 5 pixel font (upper case, digits and common punctuation; lower case is
// drawn as upper case). No torch, no external plotting library: the report stage must run on
// the bare cluster node that ran the pipeline.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mcm::report {

struct Colour {
  uint8_t r = 0, g = 0, b = 0;
};

/// A fixed palette of distinguishable colours, cycled.
Colour palette(size_t i);

/// An RGB image [height, width, 3], white.
class Canvas {
 public:
  Canvas(int width, int height);
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& rgb() const { return px_; }
  void set(int x, int y, Colour c);
  void fill(int x0, int y0, int x1, int y1, Colour c);  ///< [x0, x1) x [y0, y1), clipped
  void line(double x0, double y0, double x1, double y1, Colour c, int thickness = 1);
  /// Text with its top-left corner at (x, y), glyphs `scale` pixels per font pixel. Returns the
  /// x after the last glyph. Characters outside the font draw as a box.
  int text(int x, int y, const std::string& s, Colour c, int scale = 2);
  static int text_width(const std::string& s, int scale = 2);
  /// Pastes an RGB image [h, w, 3] at (x, y), each pixel `zoom` x `zoom` (nearest), clipped.
  void paste(const uint8_t* rgb, int w, int h, int x, int y, int zoom = 1);
  /// PNG bytes of the canvas.
  std::vector<uint8_t> png() const;

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

struct Series {
  std::string name;
  std::vector<double> x, y;  ///< non-finite y values are gaps
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 400;
  bool log2_x = false;  ///< x on a log2 axis with ticks at the data's x values (step counts)
};

/// Draws the series as lines with markers. Empty series and an empty plot are allowed (an axis
/// with "no data").
Canvas line_plot(const std::vector<Series>& series, const PlotOptions& o);

/// Short tick label: up to 4 significant digits, exponent form outside 1e-3..1e5.
std::string tick_label(double v);
/// "Nice" ticks (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace mcm::report
