// Rendering of the synthetic world. Pure C++, deterministic for a given seed.
#include "world/synth_world.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace mcm::synth {
namespace {
// Inside test in shape-local coordinates (u, v in units of the radius).
bool inside(const std::string& shape, double u, double v) {
  if (shape == "circle") return u * u + v * v <= 1.0;
  if (shape == "square") return std::fabs(u) <= 0.8 && std::fabs(v) <= 0.8;
  if (shape == "diamond") return std::fabs(u) + std::fabs(v) <= 1.0;
  // triangle, pointing up: base at v = 0.7, apex at v = -0.9
  if (v < -0.9 || v > 0.7) return false;
  double half = (v + 0.9) / 1.6 * 0.95;
  return std::fabs(u) <= half;
}

double wrap(double x) { return x - std::floor(x); }
// Displacement of the centre at frame t, a fraction of the frame per frame.
void motion(const Scene& s, int t, double& dx, double& dy) {
  double step = (s.speed == "quickly" ? 0.045 : 0.018) * t;
  dx = s.direction == "left" ? -step : s.direction == "right" ? step : 0.0;
  dy = s.direction == "up" ? -step : s.direction == "down" ? step : 0.0;
}
}  // namespace

Rgb colour_rgb(const std::string& c) {
  if (c == "red") return {220, 40, 40};
  if (c == "green") return {40, 190, 60};
  if (c == "blue") return {50, 80, 230};
  if (c == "yellow") return {235, 215, 40};
  if (c == "purple") return {150, 60, 200};
  if (c == "orange") return {245, 140, 30};
  throw DataError(cat("synth world: unknown colour \"", c, "\""));
}
Rgb background_rgb(const std::string& b) {
  if (b == "dark") return {28, 30, 38};
  if (b == "light") return {190, 195, 185};
  throw DataError(cat("synth world: unknown background \"", b, "\""));
}

bool shape_contains(const std::string& shape, double u, double v) {
  require<DataError>(std::find(shapes().begin(), shapes().end(), shape) != shapes().end(),
                     "synth world: unknown shape \"", shape, "\"");
  return inside(shape, u, v);
}

void centre_at(const Scene& s, int t, double& x, double& y) {
  double dx, dy;
  motion(s, t, dx, dy);
  x = wrap(s.x0 + dx);
  y = wrap(s.y0 + dy);
}

const std::vector<std::string>& shapes() { static const std::vector<std::string> v{"circle", "square", "triangle", "diamond"}; return v; }
const std::vector<std::string>& colours() { static const std::vector<std::string> v{"red", "green", "blue", "yellow", "purple", "orange"}; return v; }
const std::vector<std::string>& directions() { static const std::vector<std::string> v{"left", "right", "up", "down"}; return v; }
const std::vector<std::string>& speeds() { static const std::vector<std::string> v{"slowly", "quickly"}; return v; }
const std::vector<std::string>& backgrounds() { static const std::vector<std::string> v{"dark", "light"}; return v; }

std::vector<std::string> vocabulary() {
  std::vector<std::string> v{"a", "moves", "on", "background"};
  for (auto* list : {&shapes(), &colours(), &directions(), &speeds(), &backgrounds()}) v.insert(v.end(), list->begin(), list->end());
  return v;
}

Scene draw_scene(const rng::Key& key) {
  rng::Stream rng(key);
  auto pick = [&](const std::vector<std::string>& v) { return v[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(v.size()) - 1))]; };
  Scene s;
  s.shape = pick(shapes());
  s.colour = pick(colours());
  s.direction = pick(directions());
  s.speed = pick(speeds());
  s.background = pick(backgrounds());
  s.x0 = 0.2 + 0.6 * rng.uniform();
  s.y0 = 0.2 + 0.6 * rng.uniform();
  return s;
}

std::string video_caption(const Scene& s) {
  return "a " + s.colour + " " + s.shape + " moves " + s.direction + " " + s.speed + " on a " + s.background + " background";
}
std::string image_caption(const Scene& s) { return "a " + s.colour + " " + s.shape + " on a " + s.background + " background"; }

void render_frame(const Scene& s, int t, int w, int h, int ss, uint8_t* rgb) {
  // Motion: a fraction of the frame per frame, wrapping around so motion never stops.
  double fx, fy;
  centre_at(s, t, fx, fy);
  double cx = fx * w, cy = fy * h;
  double radius = s.size * std::min(w, h);
  Rgb fg = colour_rgb(s.colour), bg = background_rgb(s.background);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      int hits = 0;
      for (int sy = 0; sy < ss; ++sy) {
        for (int sx = 0; sx < ss; ++sx) {
          double px = x + (sx + 0.5) / ss, py = y + (sy + 0.5) / ss;
          // Nearest wrapped copy of the centre, so shapes crossing an edge appear on the other side.
          double ux = px - cx, uy = py - cy;
          ux -= std::round(ux / w) * w;
          uy -= std::round(uy / h) * h;
          hits += inside(s.shape, ux / radius, uy / radius);
        }
      }
      double a = static_cast<double>(hits) / (ss * ss);
      uint8_t* p = rgb + (static_cast<size_t>(y) * w + x) * 3;
      p[0] = static_cast<uint8_t>(std::lround(fg.r * a + bg.r * (1 - a)));
      p[1] = static_cast<uint8_t>(std::lround(fg.g * a + bg.g * (1 - a)));
      p[2] = static_cast<uint8_t>(std::lround(fg.b * a + bg.b * (1 - a)));
    }
  }
}

void degrade(uint8_t* rgb, int w, int h, const Degradation& d, int frame_index) {
  std::vector<double> buf(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = rgb[i];
  int r = static_cast<int>(std::lround(d.blur));
  if (r > 0) {  // separable box blur, clamped at the borders
    std::vector<double> tmp(buf.size());
    for (int pass = 0; pass < 2; ++pass) {
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          for (int c = 0; c < 3; ++c) {
            double acc = 0;
            for (int k = -r; k <= r; ++k) {
              int xx = pass == 0 ? std::clamp(x + k, 0, w - 1) : x, yy = pass == 1 ? std::clamp(y + k, 0, h - 1) : y;
              acc += buf[(static_cast<size_t>(yy) * w + xx) * 3 + c];
            }
            tmp[(static_cast<size_t>(y) * w + x) * 3 + c] = acc / (2 * r + 1);
          }
      buf.swap(tmp);
    }
  }
  if (d.watermark) {  // a translucent striped banner in the lower right, like a stock-footage mark
    int bw = w * 2 / 5, bh = std::max(4, h / 8), x0 = w - bw - w / 16, y0 = h - bh - h / 16;
    for (int y = y0; y < y0 + bh; ++y)
      for (int x = x0; x < x0 + bw; ++x) {
        bool stripe = ((x + y) / 3) % 2 == 0;
        double alpha = stripe ? 0.45 : 0.25;
        for (int c = 0; c < 3; ++c) {
          double& v = buf[(static_cast<size_t>(y) * w + x) * 3 + c];
          v = v * (1 - alpha) + 255.0 * alpha;
        }
      }
  }
  if (d.noise > 0) {
    std::vector<double> n(buf.size());
    rng::fill_normal(d.noise_key, static_cast<uint64_t>(frame_index) * buf.size(), n.data(), n.size());
    for (size_t i = 0; i < buf.size(); ++i) buf[i] += d.noise * n[i];
  }
  for (size_t i = 0; i < buf.size(); ++i) rgb[i] = static_cast<uint8_t>(std::clamp(std::lround(buf[i]), 0L, 255L));
}

}  // namespace mcm::synth
