// The pixel rules of the caption-fidelity analyser: background, object mask, colour, shape and
// direction of a clip of the synthetic world, robust to its degradations and to a generator's
// imperfect output. Plain loops over a float copy: a 8x32x32 clip takes well under a millisecond.
#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <map>
#include <numbers>
#include <vector>

#include "core/error.hpp"
#include "eval/clip_analysis.hpp"
#include "world/synth_world.hpp"

// Note [caption fidelity rules]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The world draws one saturated palette colour on a near-grey background, moving with wrap-around,
// under blur, noise, H.264 and a translucent white banner (lower right). The rules:
// 1. Background: per frame, the per-channel median of all pixels (the object covers <= ~20%).
// 2. Foreground evidence d(p): the distance of a pixel from the segment that runs from the
//    background towards white (alpha 0..0.6). The banner is the background blended with white,
//    so it lies on that segment and vanishes from the mask; an object under the banner keeps
//    (1 - alpha) of its distance. Partial coverage scales d linearly (blur, edges).
// 3. Levels (histogram quantiles, 1/4 unit): n0 = median d (the noise floor); candidates
//    d > floor = max(20, 3 n0); the object level L is the 75th percentile of the candidates; the
//    mask is d > max(floor, L / 2). A clip with too few candidates (blank) or whose noise floor
//    leaves none (pure noise: n0 ~ 100 puts the floor beyond any colour) has no object.
// 4. Object per frame: the largest 8-connected component of the mask on the torus (so a shape
//    split by the frame edges is one object); a frame counts when that component is plausible
//    (0.3% .. 60% of the frame, >= half of the frame's mask). Coverage a(p) = (d - n0) / (L - n0)
//    clamped to [0, 1] over the component and its 1-pixel ring gives sub-pixel moments.
//    Unwrapping: coordinates are taken relative to the circular mean of the coverage, wrapped
//    into (-W/2, W/2], then re-centred on their arithmetic mean.
// 5. Colour: the per-channel median RGB of the object's core pixels (d >= 0.8 L, which excludes
//    pixels dimmed by the banner) over all frames, nearest palette colour in CIELAB with the
//    lightness difference halved (hue and chroma decide; a generator's brightness may drift).
// 6. Shape: angular harmonics of the coverage about its centroid, weighted by r^k:
//      triangle = |sum a r^3 e^{3i phi}| / sum a r^3      (0.66 for the world's triangle, else 0)
//      corner   = sum a r^4 cos(4 phi) / sum a r^4         (-0.43 square, 0 circle, +0.43 diamond)
//    The values are computed from the world's own shapes (synth::shape_contains) at start-up;
//    blur shrinks them, so the decision is by thresholds at a third of the way: triangle when
//    the triangle score passes 1/3 of the world's, else square / diamond when the corner score
//    passes -/+ 1/3 of the world's, else circle. Scores are the median over the usable frames
//    (one vote per frame is reported in the detail). Scale-invariant, so a generator's size
//    drift does not matter; rotation-sensitive on purpose (a diamond is a rotated square).
// 7. Direction: the wrap-aware displacement of the centroid between consecutive usable frames
//    (each step wrapped into (-W/2, W/2]), summed; the dominant axis and its sign name the
//    direction (up = -y). Under 1/32 of the frame in total is "no motion" (empty field).

namespace mcm::eval {
namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;

struct Lab { double l, a, b; };

double srgb_to_linear(double c) {
  c /= 255.0;
  return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
}

Lab to_lab(double r8, double g8, double b8) {
  double r = srgb_to_linear(r8), g = srgb_to_linear(g8), b = srgb_to_linear(b8);
  double x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
  double y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  double z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
  auto f = [](double t) { return t > 216.0 / 24389.0 ? std::cbrt(t) : (24389.0 / 27.0 * t + 16.0) / 116.0; };
  double fx = f(x), fy = f(y), fz = f(z);
  return {116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)};
}

/// x wrapped into (-n/2, n/2].
double wrap_centered(double x, double n) {
  x = std::fmod(x, n);
  if (x > n / 2) x -= n;
  if (x <= -n / 2) x += n;
  return x;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

/// The q-quantile of non-negative values below `top`, to 1/`per_unit` (a histogram: O(n), no sort).
double histogram_quantile(const double* v, size_t n, double q, double top, double per_unit) {
  if (n == 0) return 0;
  const size_t bins = static_cast<size_t>(top * per_unit) + 1;
  std::vector<uint32_t> hist(bins, 0);
  for (size_t i = 0; i < n; ++i) ++hist[std::min(bins - 1, static_cast<size_t>(std::max(0.0, v[i]) * per_unit))];
  const double target = q * static_cast<double>(n);
  double acc = 0;
  for (size_t b = 0; b < bins; ++b) {
    acc += hist[b];
    if (acc > target) return (static_cast<double>(b) + 0.5) / per_unit;
  }
  return top;
}

struct ShapeFeatures { double triangle = 0, corner = 0; };

/// The harmonics of a coverage map with coordinates relative to its centroid: with z = u + iv,
/// r^3 e^{3i phi} = z^3 and r^4 cos(4 phi) = Re z^4, so no trigonometry per point.
template <class Fn>
ShapeFeatures harmonics(Fn&& for_each_point) {
  std::complex<double> m3{0, 0};
  double w3 = 0, m4 = 0, w4 = 0;
  for_each_point([&](double u, double v, double a) {
    const std::complex<double> z{u, v}, z2 = z * z;
    const double r2 = u * u + v * v;
    m3 += a * z2 * z;
    w3 += a * r2 * std::sqrt(r2);
    m4 += a * (z2 * z2).real();
    w4 += a * r2 * r2;
  });
  return {w3 > 0 ? std::abs(m3) / w3 : 0, w4 > 0 ? m4 / w4 : 0};
}

/// The world's shapes, measured once from their definitions (supersampled, no blur).
const std::map<std::string, ShapeFeatures>& world_shape_features() {
  static const std::map<std::string, ShapeFeatures> table = [] {
    std::map<std::string, ShapeFeatures> t;
    const int n = 241;  // samples per axis over [-1.2, 1.2]
    for (auto& shape : synth::shapes()) {
      std::vector<std::array<double, 3>> pts;
      double cu = 0, cv = 0, area = 0;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          double u = -1.2 + 2.4 * j / (n - 1), v = -1.2 + 2.4 * i / (n - 1);
          if (!synth::shape_contains(shape, u, v)) continue;
          pts.push_back({u, v, 1.0});
          cu += u;
          cv += v;
          area += 1;
        }
      cu /= area;
      cv /= area;
      t[shape] = harmonics([&](auto&& f) { for (auto& p : pts) f(p[0] - cu, p[1] - cv, p[2]); });
    }
    return t;
  }();
  return table;
}

std::string classify_shape(const ShapeFeatures& f) {
  const auto& w = world_shape_features();
  const double t3 = w.at("triangle").triangle / 3, sq = w.at("square").corner / 3, di = w.at("diamond").corner / 3;
  if (f.triangle > t3) return "triangle";
  if (f.corner < sq) return "square";
  if (f.corner > di) return "diamond";
  return "circle";
}

/// One frame's object: coverage on the torus, centroid, features.
struct FrameObject {
  bool usable = false;
  double cx = 0, cy = 0;  ///< centroid, pixels (wrapped into [0, W), [0, H))
  double area = 0;        ///< sum of coverage, pixels
  ShapeFeatures features;
  std::vector<int> core;  ///< pixel indices of the component (for the colour)
  std::string reason;     ///< why not usable
};

class Analyser {
 public:
  Analyser(const float* rgb, int frames, int width, int height) : rgb_(rgb), t_(frames), w_(width), h_(height) {
    // The torus: the 8 neighbours of each pixel, and each column's and row's angle.
    nbr_.resize(static_cast<size_t>(w_) * h_ * 8);
    for (int y = 0, i = 0; y < h_; ++y)
      for (int x = 0; x < w_; ++x, ++i)
        for (int dy = -1, k = 0; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx)
            if (dx || dy) nbr_[static_cast<size_t>(i) * 8 + k++] = ((y + dy + h_) % h_) * w_ + (x + dx + w_) % w_;
    for (int x = 0; x < w_; ++x) {
      sin_x_.push_back(std::sin(kTwoPi * (x + 0.5) / w_));
      cos_x_.push_back(std::cos(kTwoPi * (x + 0.5) / w_));
    }
    for (int y = 0; y < h_; ++y) {
      sin_y_.push_back(std::sin(kTwoPi * (y + 0.5) / h_));
      cos_y_.push_back(std::cos(kTwoPi * (y + 0.5) / h_));
    }
  }

  ClipAnalysis run() {
    ClipAnalysis out;
    const size_t hw = static_cast<size_t>(w_) * h_;
    evidence();
    if (!levels(out)) return out;
    std::vector<FrameObject> objects(static_cast<size_t>(t_));
    std::string frame_notes;
    for (int t = 0; t < t_; ++t) {
      objects[t] = find_object(t);
      if (objects[t].usable) {
        ++out.frames_used;
        out.foreground_fraction += objects[t].area / static_cast<double>(hw);
      }
      frame_notes += cat(" f", t, "=", objects[t].usable ? classify_shape(objects[t].features) : "(" + objects[t].reason + ")");
    }
    if (out.frames_used * 2 < t_) {
      out.detail = cat("no coherent object: usable in ", out.frames_used, "/", t_, " frames;", frame_notes);
      out.frames_used = 0;
      out.foreground_fraction = 0;
      return out;
    }
    out.foreground_fraction /= out.frames_used;
    colour(objects, out);
    shape(objects, out);
    direction(objects, out);
    out.detail = cat("background rgb(", std::lround(bg_mean_[0]), ",", std::lround(bg_mean_[1]), ",", std::lround(bg_mean_[2]),
                     "), noise floor ", std::lround(noise_), ", object level ", std::lround(level_), "; ", out.detail,
                     "; per-frame shapes:", frame_notes);
    return out;
  }

 private:
  const float* px(int t, size_t i) const { return rgb_ + (static_cast<size_t>(t) * w_ * h_ + i) * 3; }

  // Rules 1 and 2: per-frame background and the distance from the background-to-white segment.
  void evidence() {
    const size_t hw = static_cast<size_t>(w_) * h_;
    d_.assign(hw * t_, 0.0);
    std::vector<double> ch(hw);
    for (int t = 0; t < t_; ++t) {
      std::array<double, 3> bg{};
      for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < hw; ++i) ch[i] = px(t, i)[c];
        bg[c] = histogram_quantile(ch.data(), hw, 0.5, 256, 4);
        bg_mean_[c] += bg[c] / t_;
      }
      std::array<double, 3> dir{255 - bg[0], 255 - bg[1], 255 - bg[2]};
      double dir2 = dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2];
      for (size_t i = 0; i < hw; ++i) {
        const float* p = px(t, i);
        double v[3] = {p[0] - bg[0], p[1] - bg[1], p[2] - bg[2]};
        double s = dir2 > 1 ? std::clamp((v[0] * dir[0] + v[1] * dir[1] + v[2] * dir[2]) / dir2, 0.0, 0.6) : 0.0;
        double r0 = v[0] - s * dir[0], r1 = v[1] - s * dir[1], r2 = v[2] - s * dir[2];
        d_[static_cast<size_t>(t) * hw + i] = std::sqrt(r0 * r0 + r1 * r1 + r2 * r2);
      }
    }
  }

  // Rule 3: noise floor, object level, mask threshold. False (with the reason) when no object.
  bool levels(ClipAnalysis& out) {
    noise_ = histogram_quantile(d_.data(), d_.size(), 0.5, 450, 4);
    floor_ = std::max(20.0, 3.0 * noise_);
    std::vector<double> cand;
    for (double v : d_) if (v > floor_) cand.push_back(v);
    const double min_pixels = std::max(4.0, 0.003 * static_cast<double>(w_) * h_) * t_ / 2;
    if (static_cast<double>(cand.size()) < min_pixels) {
      out.detail = cat("no foreground: ", cand.size(), " pixels above the floor ", std::lround(floor_), " (noise floor ",
                       std::lround(noise_), ")");
      return false;
    }
    level_ = histogram_quantile(cand.data(), cand.size(), 0.75, 450, 4);
    thresh_ = std::max(floor_, level_ / 2);
    return true;
  }

  // Rule 4: the largest component on the torus, its coverage, centroid and harmonics.
  FrameObject find_object(int t) const {
    FrameObject o;
    const size_t hw = static_cast<size_t>(w_) * h_;
    const double* d = d_.data() + static_cast<size_t>(t) * hw;
    std::vector<int> label(hw, -1);
    std::vector<int> stack, best;
    size_t mask_count = 0;
    for (size_t s = 0; s < hw; ++s) {
      if (d[s] <= thresh_) continue;
      ++mask_count;
      if (label[s] >= 0) continue;
      std::vector<int> comp;
      label[s] = static_cast<int>(s);
      stack.assign(1, static_cast<int>(s));
      while (!stack.empty()) {
        int i = stack.back();
        stack.pop_back();
        comp.push_back(i);
        for (int k = 0; k < 8; ++k) {
          const int j = nbr_[static_cast<size_t>(i) * 8 + k];
          if (label[j] < 0 && d[j] > thresh_) {
            label[j] = static_cast<int>(s);
            stack.push_back(j);
          }
        }
      }
      if (comp.size() > best.size()) best.swap(comp);
    }
    const double frac = static_cast<double>(best.size()) / static_cast<double>(hw);
    if (best.size() < 4 || frac < 0.003) { o.reason = "none"; return o; }
    if (frac > 0.6) { o.reason = "too large"; return o; }
    if (best.size() * 2 < mask_count) { o.reason = "scattered"; return o; }

    // Coverage over the component and its 1-pixel ring.
    std::vector<char> in(hw, 0);
    for (int i : best) {
      in[static_cast<size_t>(i)] = 1;
      for (int k = 0; k < 8; ++k) in[static_cast<size_t>(nbr_[static_cast<size_t>(i) * 8 + k])] = 1;
    }
    std::vector<std::array<double, 3>> pts;  // x, y, coverage
    double sx = 0, cxs = 0, sy = 0, cys = 0, area = 0;
    const double scale = 1.0 / std::max(1.0, level_ - noise_);
    for (int yi = 0, i = 0; yi < h_; ++yi)
      for (int xi = 0; xi < w_; ++xi, ++i) {
        if (!in[static_cast<size_t>(i)]) continue;
        const double a = std::min(1.0, (d[i] - noise_) * scale);
        if (a <= 0) continue;
        pts.push_back({xi + 0.5, yi + 0.5, a});
        sx += a * sin_x_[xi];
        cxs += a * cos_x_[xi];
        sy += a * sin_y_[yi];
        cys += a * cos_y_[yi];
        area += a;
      }
    // Unwrap around the circular mean, then re-centre on the arithmetic mean.
    double cx = std::atan2(sx, cxs) / kTwoPi * w_, cy = std::atan2(sy, cys) / kTwoPi * h_;
    double mx = 0, my = 0;
    for (auto& p : pts) {
      p[0] = wrap_centered(p[0] - cx, w_);
      p[1] = wrap_centered(p[1] - cy, h_);
      mx += p[2] * p[0];
      my += p[2] * p[1];
    }
    mx /= area;
    my /= area;
    o.features = harmonics([&](auto&& f) { for (auto& p : pts) f(p[0] - mx, p[1] - my, p[2]); });
    o.cx = std::fmod(cx + mx + 2.0 * w_, static_cast<double>(w_));
    o.cy = std::fmod(cy + my + 2.0 * h_, static_cast<double>(h_));
    o.area = area;
    o.core = std::move(best);
    o.usable = true;
    return o;
  }

  // Rule 5.
  void colour(const std::vector<FrameObject>& objects, ClipAnalysis& out) const {
    const size_t hw = static_cast<size_t>(w_) * h_;
    std::array<std::vector<double>, 3> core, all;
    for (int t = 0; t < t_; ++t) {
      if (!objects[t].usable) continue;
      for (int i : objects[t].core) {
        const float* p = px(t, static_cast<size_t>(i));
        bool is_core = d_[static_cast<size_t>(t) * hw + i] >= 0.8 * level_;
        for (int c = 0; c < 3; ++c) (is_core ? core : all)[c].push_back(p[c]);
      }
    }
    auto& use = core[0].size() >= 3 ? core : all;
    if (&use == &all)
      for (int c = 0; c < 3; ++c) all[c].insert(all[c].end(), core[c].begin(), core[c].end());
    double rgb[3] = {median(use[0]), median(use[1]), median(use[2])};
    Lab lab = to_lab(rgb[0], rgb[1], rgb[2]);
    double best = 1e300;
    for (auto& name : synth::colours()) {
      synth::Rgb ref = synth::colour_rgb(name);
      Lab r = to_lab(ref.r, ref.g, ref.b);
      double dl = 0.5 * (lab.l - r.l), da = lab.a - r.a, db = lab.b - r.b, dist = std::sqrt(dl * dl + da * da + db * db);
      if (dist < best) {
        best = dist;
        out.found.colour = name;
      }
    }
    out.detail += cat("colour rgb(", std::lround(rgb[0]), ",", std::lround(rgb[1]), ",", std::lround(rgb[2]), ") -> ",
                      out.found.colour, " (Lab distance ", std::lround(best), ")");
  }

  // Rule 6.
  void shape(const std::vector<FrameObject>& objects, ClipAnalysis& out) const {
    std::vector<double> tri, cor;
    for (auto& o : objects)
      if (o.usable) {
        tri.push_back(o.features.triangle);
        cor.push_back(o.features.corner);
      }
    ShapeFeatures f{median(tri), median(cor)};
    out.triangle_score = f.triangle;
    out.corner_score = f.corner;
    out.found.shape = classify_shape(f);
    out.detail += cat("; shape scores triangle ", f.triangle, " corner ", f.corner, " -> ", out.found.shape);
  }

  // Rule 7.
  void direction(const std::vector<FrameObject>& objects, ClipAnalysis& out) const {
    double mx = 0, my = 0;
    const FrameObject* prev = nullptr;
    for (auto& o : objects) {
      if (!o.usable) continue;
      if (prev) {
        mx += wrap_centered(o.cx - prev->cx, w_);
        my += wrap_centered(o.cy - prev->cy, h_);
      }
      prev = &o;
    }
    out.motion_x = mx / w_;
    out.motion_y = my / h_;
    const double ax = std::fabs(out.motion_x), ay = std::fabs(out.motion_y);
    if (std::max(ax, ay) >= 1.0 / 32) out.found.direction = ax >= ay ? (mx < 0 ? "left" : "right") : (my < 0 ? "up" : "down");
    out.detail += cat("; motion (", out.motion_x, ", ", out.motion_y, ") of the frame -> ",
                      out.found.direction.empty() ? "none" : out.found.direction);
  }

  const float* rgb_;
  int t_, w_, h_;
  std::vector<int> nbr_;
  std::vector<double> sin_x_, cos_x_, sin_y_, cos_y_;
  std::vector<double> d_;
  std::array<double, 3> bg_mean_{};
  double noise_ = 0, floor_ = 0, level_ = 0, thresh_ = 0;
};

}  // namespace

ClipAnalysis analyse_rgb(const float* rgb, int frames, int width, int height) {
  require<DataError>(frames >= 1 && width >= 4 && height >= 4, "caption fidelity: a clip of ", frames, " frames of ",
                     width, "x", height, " is too small to analyse");
  const size_t n = static_cast<size_t>(frames) * width * height * 3;
  for (size_t i = 0; i < n; ++i)
    require<DataError>(std::isfinite(rgb[i]), "caption fidelity: a clip of ", frames, "x", height, "x", width,
                       " has a non-finite value at element ", i, " (frame ", i / (static_cast<size_t>(width) * height * 3), ")");
  return Analyser(rgb, frames, width, height).run();
}

}  // namespace mcm::eval
