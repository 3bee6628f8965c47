// Caption parsing, the tensor entry points of the analyser, and the accumulated score.
#include "eval/caption_fidelity.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <vector>

#include <torch/torch.h>

#include "core/error.hpp"
#include "eval/clip_analysis.hpp"
#include "world/synth_world.hpp"

namespace mcm::eval {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

ClipAttributes parse_caption(const std::string& caption) {
  std::string text = caption;
  for (char& c : text) c = std::isalpha(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : ' ';
  ClipAttributes a;
  struct Field { const char* name; const std::vector<std::string>& vocab; std::string& value; };
  Field fields[] = {{"colour", synth::colours(), a.colour}, {"shape", synth::shapes(), a.shape},
                    {"direction", synth::directions(), a.direction}};
  std::istringstream words(text);
  for (std::string w; words >> w;)
    for (auto& f : fields) {
      if (std::find(f.vocab.begin(), f.vocab.end(), w) == f.vocab.end()) continue;
      require<DataError>(f.value.empty() || f.value == w, "parse caption \"", caption, "\": two ", f.name, "s (", f.value,
                         " and ", w, ")");
      f.value = w;
    }
  for (auto& f : fields)
    require<DataError>(!f.value.empty(), "parse caption \"", caption, "\": no ", f.name, " (one of ", join(f.vocab), ")");
  return a;
}

ClipAnalysis analyse_clip(const at::Tensor& frames) {
  require<DataError>(frames.defined() && frames.dim() == 4, "caption fidelity: expected frames [T, 3, H, W] or uint8 [T, H, W, 3], got ",
                     frames.defined() ? frames.sizes() : at::IntArrayRef{});
  at::Tensor rgb;  // float [T, H, W, 3] in 0..255
  if (frames.scalar_type() == at::kByte) {
    require<DataError>(frames.size(3) == 3, "caption fidelity: uint8 frames must be [T, H, W, 3], got ", frames.sizes());
    rgb = frames.to(at::kCPU, at::kFloat);
  } else {
    require<DataError>(at::isFloatingType(frames.scalar_type()) && frames.size(1) == 3,
                       "caption fidelity: float frames must be [T, 3, H, W] in [-1, 1], got ", frames.sizes(), " ",
                       frames.scalar_type());
    rgb = ((frames.detach().to(at::kCPU, at::kFloat) + 1.0) * 127.5).clamp(0, 255).permute({0, 2, 3, 1});
  }
  rgb = rgb.contiguous();
  return analyse_rgb(rgb.data_ptr<float>(), static_cast<int>(rgb.size(0)), static_cast<int>(rgb.size(2)),
                     static_cast<int>(rgb.size(1)));
}

ClipAnalysis analyse_clip(const uint8_t* rgb, int frames, int width, int height) {
  std::vector<float> f(static_cast<size_t>(std::max(frames, 0)) * std::max(width, 0) * std::max(height, 0) * 3);
  for (size_t i = 0; i < f.size(); ++i) f[i] = rgb[i];
  return analyse_rgb(f.data(), frames, width, height);
}

void FidelityScore::add(const ClipAttributes& expected, const ClipAnalysis& found) {
  auto none = [](const std::string& s) { return s.empty() ? std::string("none") : s; };
  const bool c = found.found.colour == expected.colour, s = found.found.shape == expected.shape,
             d = found.found.direction == expected.direction;
  ++n;
  colour += c;
  shape += s;
  direction += d;
  all += c && s && d;
  ++confusion["colour"][expected.colour][none(found.found.colour)];
  ++confusion["shape"][expected.shape][none(found.found.shape)];
  ++confusion["direction"][expected.direction][none(found.found.direction)];
}

double FidelityScore::accuracy(const std::string& field) const {
  int64_t k = field == "colour" ? colour : field == "shape" ? shape : field == "direction" ? direction : field == "all" ? all : -1;
  require<Error>(k >= 0, "caption fidelity: no field \"", field, "\" (colour, shape, direction, all)");
  return n > 0 ? static_cast<double>(k) / static_cast<double>(n) : 0.0;
}

namespace {

// Note [clearly above chance]: the accuracy a caption-blind generator with the same outputs
// would get is what a score must beat. Pairing the same samples with the captions at random
// gives sum_c share_expected(c) * share_found(c) ("blind"); a collapsed generator that always
// draws the most common class beats the uniform 1/K there, and one that never finds an object
// stays below it. The null rate is the larger of the two, and p_value is the one-sided binomial
// tail P(X >= correct | n, null): the chance that a caption-blind generator scores this well.
// The acceptance bar is p < 0.001 on every attribute.
double blind_rate(const std::map<std::string, std::map<std::string, int64_t>>& conf, int64_t n) {
  if (n == 0) return 0;
  std::map<std::string, int64_t> expected, found;
  for (auto& [e, row] : conf)
    for (auto& [f, k] : row) expected[e] += k, found[f] += k;
  double r = 0;
  for (auto& [c, k] : expected)
    if (auto it = found.find(c); it != found.end()) r += static_cast<double>(k) * static_cast<double>(it->second);
  return r / (static_cast<double>(n) * static_cast<double>(n));
}

}  // namespace

double binomial_tail(int64_t k, int64_t n, double p) {
  require<Error>(n >= 0 && p >= 0 && p <= 1, "binomial_tail: n ", n, " p ", p);
  if (k <= 0) return 1.0;
  if (k > n) return 0.0;
  if (p <= 0) return 0.0;
  if (p >= 1) return 1.0;
  const double lp = std::log(p), lq = std::log1p(-p), ln = std::lgamma(static_cast<double>(n) + 1);
  double sum = 0;
  for (int64_t i = k; i <= n; ++i) {
    const double di = static_cast<double>(i);
    sum += std::exp(ln - std::lgamma(di + 1) - std::lgamma(static_cast<double>(n - i) + 1) + di * lp +
                    static_cast<double>(n - i) * lq);
  }
  return std::min(1.0, sum);
}

nlohmann::json FidelityScore::to_json() const {
  const double nc = static_cast<double>(synth::colours().size()), ns = static_cast<double>(synth::shapes().size()),
               nd = static_cast<double>(synth::directions().size());
  nlohmann::json j{{"clips", n},
                   {"correct", {{"colour", colour}, {"shape", shape}, {"direction", direction}, {"all", all}}},
                   {"accuracy", {{"colour", accuracy("colour")}, {"shape", accuracy("shape")},
                                 {"direction", accuracy("direction")}, {"all", accuracy("all")}}},
                   {"chance", {{"colour", 1 / nc}, {"shape", 1 / ns}, {"direction", 1 / nd}, {"all", 1 / (nc * ns * nd)}}}};
  j["confusion"] = confusion;
  // Note [clearly above chance]; "all" has no confusion of its own and keeps the uniform rate.
  for (const char* f : {"colour", "shape", "direction", "all"}) {
    const double uniform = j["chance"][f].get<double>();
    const double blind = confusion.count(f) ? blind_rate(confusion.at(f), n) : uniform;
    j["blind"][f] = blind;
    j["p_value"][f] = binomial_tail(j["correct"][f].get<int64_t>(), n, std::max(uniform, blind));
  }
  return j;
}

}  // namespace mcm::eval
