#include "report/plot.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>

#include "io/media_encode.hpp"

namespace mcm::report {
namespace {

// The 3 x 5 font: five rows of three bits, the left column in bit 2.
const std::map<char, std::array<uint8_t, 5>>& font() {
  static const std::map<char, std::array<uint8_t, 5>> f{
      {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
      {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
      {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'A', {2, 5, 7, 5, 5}}, {'B', {6, 5, 6, 5, 6}},
      {'C', {3, 4, 4, 4, 3}}, {'D', {6, 5, 5, 5, 6}}, {'E', {7, 4, 6, 4, 7}}, {'F', {7, 4, 6, 4, 4}},
      {'G', {3, 4, 5, 5, 3}}, {'H', {5, 5, 7, 5, 5}}, {'I', {7, 2, 2, 2, 7}}, {'J', {1, 1, 1, 5, 2}},
      {'K', {5, 5, 6, 5, 5}}, {'L', {4, 4, 4, 4, 7}}, {'M', {5, 7, 7, 5, 5}}, {'N', {6, 5, 5, 5, 5}},
      {'O', {2, 5, 5, 5, 2}}, {'P', {6, 5, 6, 4, 4}}, {'Q', {2, 5, 5, 6, 3}}, {'R', {6, 5, 6, 5, 5}},
      {'S', {3, 4, 2, 1, 6}}, {'T', {7, 2, 2, 2, 2}}, {'U', {5, 5, 5, 5, 7}}, {'V', {5, 5, 5, 5, 2}},
      {'W', {5, 5, 7, 7, 5}}, {'X', {5, 5, 2, 5, 5}}, {'Y', {5, 5, 2, 2, 2}}, {'Z', {7, 1, 2, 4, 7}},
      {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}}, {'+', {0, 2, 7, 2, 0}}, {'_', {0, 0, 0, 0, 7}},
      {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}}, {'/', {1, 1, 2, 4, 4}}, {':', {0, 2, 0, 2, 0}},
      {'%', {5, 1, 2, 4, 5}}, {',', {0, 0, 0, 2, 4}}, {'=', {0, 7, 0, 7, 0}}, {' ', {0, 0, 0, 0, 0}},
      {'[', {3, 2, 2, 2, 3}}, {']', {6, 2, 2, 2, 6}}, {'\'', {2, 2, 0, 0, 0}}, {'x', {0, 5, 2, 5, 0}}};
  return f;
}

const Colour kBlack{0, 0, 0}, kGrey{205, 205, 205}, kDark{90, 90, 90};

}  // namespace

Colour palette(size_t i) {
  static const Colour p[] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14},
                             {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};
  return p[i % (sizeof(p) / sizeof(p[0]))];
}

Canvas::Canvas(int width, int height) : w_(width), h_(height), px_(static_cast<size_t>(width) * height * 3, 255) {}

void Canvas::set(int x, int y, Colour c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::fill(int x0, int y0, int x1, int y1, Colour c) {
  for (int y = std::max(0, y0); y < std::min(h_, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(w_, x1); ++x) set(x, y, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, Colour c, int thickness) {
  const double len = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
  const int n = std::max(1, static_cast<int>(std::ceil(len)));
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int i = 0; i <= n; ++i) {
    const double t = static_cast<double>(i) / n;
    const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0))), y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
    for (int dy = lo; dy <= hi; ++dy)
      for (int dx = lo; dx <= hi; ++dx) set(x + dx, y + dy, c);
  }
}

int Canvas::text_width(const std::string& s, int scale) { return static_cast<int>(s.size()) * 4 * scale; }

int Canvas::text(int x, int y, const std::string& s, Colour c, int scale) {
  for (char ch : s) {
    auto it = font().find(ch);
    if (it == font().end()) it = font().find(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
    for (int r = 0; r < 5; ++r)
      for (int col = 0; col < 3; ++col) {
        const bool on = it != font().end() ? ((it->second[static_cast<size_t>(r)] >> (2 - col)) & 1)
                                           : (r == 0 || r == 4 || col == 0 || col == 2);
        if (on) fill(x + col * scale, y + r * scale, x + (col + 1) * scale, y + (r + 1) * scale, c);
      }
    x += 4 * scale;
  }
  return x;
}

void Canvas::paste(const uint8_t* rgb, int w, int h, int x, int y, int zoom) {
  for (int yy = 0; yy < h * zoom; ++yy)
    for (int xx = 0; xx < w * zoom; ++xx) {
      const uint8_t* p = rgb + (static_cast<size_t>(yy / zoom) * w + xx / zoom) * 3;
      set(x + xx, y + yy, {p[0], p[1], p[2]});
    }
}

std::vector<uint8_t> Canvas::png() const { return io::encode_png(px_.data(), w_, h_); }

std::string tick_label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (v == 0) return "0";
  if (a >= 1e5 || a < 1e-3)
    std::snprintf(buf, sizeof buf, "%.2g", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

Canvas line_plot(const std::vector<Series>& series, const PlotOptions& o) {
  Canvas c(o.width, o.height);
  // The legend sits right of the axes, so it never hides data.
  int legend_w = 0;
  for (const auto& s : series) legend_w = std::max(legend_w, Canvas::text_width(s.name) + 30);
  const int left = 72, right = 16 + legend_w, top = 34, bottom = 46;
  const int px0 = left, px1 = o.width - right, py0 = top, py1 = o.height - bottom;
  c.text(left, 10, o.title, kBlack, 2);
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  std::vector<double> xs;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i]) || (o.log2_x && s.x[i] <= 0)) continue;
      const double x = o.log2_x ? std::log2(s.x[i]) : s.x[i];
      xlo = std::min(xlo, x), xhi = std::max(xhi, x), ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
      xs.push_back(s.x[i]);
    }
  c.line(px0, py1, px1, py1, kBlack);
  c.line(px0, py0, px0, py1, kBlack);
  c.text((px0 + px1 - Canvas::text_width(o.x_label)) / 2, o.height - 16, o.x_label, kBlack, 2);
  c.text(4, top - 14, o.y_label, kDark, 2);
  if (xs.empty()) {
    c.text((px0 + px1) / 2 - Canvas::text_width("no data") / 2, (py0 + py1) / 2, "no data", kDark, 2);
    return c;
  }
  if (xhi == xlo) xlo -= 1, xhi += 1;
  if (yhi == ylo) ylo -= std::max(1e-12, std::abs(ylo) * 0.1), yhi += std::max(1e-12, std::abs(yhi) * 0.1);
  const double ypad = 0.05 * (yhi - ylo), xpad = 0.04 * (xhi - xlo);
  ylo -= ypad, yhi += ypad, xlo -= xpad, xhi += xpad;
  auto X = [&](double x) { return px0 + (((o.log2_x ? std::log2(x) : x) - xlo) / (xhi - xlo)) * (px1 - px0); };
  auto Y = [&](double y) { return py1 - ((y - ylo) / (yhi - ylo)) * (py1 - py0); };
  // Grid and ticks.
  for (double v : nice_ticks(ylo, yhi)) {
    const double y = Y(v);
    c.line(px0 + 1, y, px1, y, kGrey);
    c.line(px0 - 4, y, px0, y, kBlack);
    const auto lbl = tick_label(v);
    c.text(px0 - 8 - Canvas::text_width(lbl), static_cast<int>(y) - 5, lbl, kBlack, 2);
  }
  std::vector<double> xt;
  if (o.log2_x) {
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    xt = xs;
  } else {
    xt = nice_ticks(xlo, xhi);
  }
  for (double v : xt) {
    const double x = X(v);
    c.line(x, py0, x, py1 - 1, kGrey);
    c.line(x, py1, x, py1 + 4, kBlack);
    const auto lbl = tick_label(v);
    c.text(static_cast<int>(x) - Canvas::text_width(lbl) / 2, py1 + 8, lbl, kBlack, 2);
  }
  // Series, then the legend in the top right corner.
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const Colour col = palette(k);
    bool have = false;
    double lx = 0, ly = 0;
    const bool markers = s.x.size() <= 24;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (o.log2_x && s.x[i] <= 0)) {
        have = false;
        continue;
      }
      const double x = X(s.x[i]), y = Y(s.y[i]);
      if (have) c.line(lx, ly, x, y, col, 2);
      if (markers) c.fill(static_cast<int>(x) - 3, static_cast<int>(y) - 3, static_cast<int>(x) + 4, static_cast<int>(y) + 4, col);
      lx = x, ly = y, have = true;
    }
  }
  int ly = py0 + 6;
  const int lx = px1 + 14;
  for (size_t k = 0; k < series.size(); ++k) {
    c.fill(lx, ly + 3, lx + 16, ly + 7, palette(k));
    c.text(lx + 22, ly, series[k].name, kBlack, 2);
    ly += 16;
  }
  return c;
}

}  // namespace mcm::report
