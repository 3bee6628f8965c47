#include "eval/frechet.hpp"

#include <cmath>

#include "core/error.hpp"

namespace mcm::eval {

void FeatureStats::add(const torch::Tensor& features) {
  require<DataError>(features.dim() == 2, "feature statistics: features of shape ", features.sizes(), ", expected [N, D]");
  auto x = features.detach().to(torch::kCPU, torch::kFloat64);
  require<DataError>(torch::isfinite(x).all().item<bool>(), "feature statistics: non-finite features");
  if (!sum.defined()) {
    sum = torch::zeros({x.size(1)}, torch::kFloat64);
    outer = torch::zeros({x.size(1), x.size(1)}, torch::kFloat64);
  }
  require<DataError>(x.size(1) == dim(), "feature statistics: ", x.size(1), "-d features added to ", dim(), "-d ones");
  sum += x.sum(0);
  outer += x.t().matmul(x);
  count += x.size(0);
}

torch::Tensor FeatureStats::mean() const {
  require<DataError>(count > 0, "feature statistics: no features");
  return sum / static_cast<double>(count);
}

torch::Tensor FeatureStats::cov() const {
  auto mu = mean();
  return outer / static_cast<double>(count) - torch::outer(mu, mu);
}

torch::Tensor FeatureStats::flat() const {
  require<DataError>(sum.defined(), "feature statistics: no features to reduce");
  return torch::cat({torch::tensor({static_cast<double>(count)}, torch::kFloat64), sum, outer.flatten()});
}

FeatureStats FeatureStats::from_flat(const torch::Tensor& flat, int64_t dim) {
  require<DataError>(flat.dim() == 1 && flat.size(0) == 1 + dim + dim * dim, "feature statistics: ", flat.size(0),
                     " values for ", dim, "-d features");
  auto f = flat.to(torch::kCPU, torch::kFloat64);
  FeatureStats s;
  s.count = static_cast<int64_t>(std::llround(f[0].item<double>()));
  s.sum = f.slice(0, 1, 1 + dim).clone();
  s.outer = f.slice(0, 1 + dim).view({dim, dim}).clone();
  return s;
}

namespace {
// Square root of a symmetric PSD matrix by its eigen-decomposition (negative rounding clamped).
torch::Tensor sqrt_psd(const torch::Tensor& c) {
  auto [w, v] = torch::linalg_eigh(c);
  return (v * w.clamp_min(0).sqrt().unsqueeze(0)).matmul(v.t());
}
}  // namespace

double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& cov1, const torch::Tensor& mu2,
                        const torch::Tensor& cov2, const std::string& what) {
  const int64_t d = mu1.size(0);
  require<DataError>(mu1.dim() == 1 && mu2.sizes() == mu1.sizes() && cov1.sizes() == cov2.sizes() && cov1.dim() == 2 &&
                         cov1.size(0) == d && cov1.size(1) == d,
                     "Fréchet distance of ", what, ": means ", mu1.sizes(), " and ", mu2.sizes(), ", covariances ",
                     cov1.sizes(), " and ", cov2.sizes());
  auto m1 = mu1.to(torch::kFloat64), m2 = mu2.to(torch::kFloat64);
  // Symmetrised against rounding, as the eigen-solver assumes.
  auto c1 = cov1.to(torch::kFloat64), c2 = cov2.to(torch::kFloat64);
  c1 = (c1 + c1.t()) / 2;
  c2 = (c2 + c2.t()) / 2;
  auto s1 = sqrt_psd(c1);
  auto m = s1.matmul(c2).matmul(s1);
  auto lam = torch::linalg_eigvalsh((m + m.t()) / 2);
  const double tr_sqrt = lam.clamp_min(0).sqrt().sum().item<double>();
  const double fd = (m1 - m2).pow(2).sum().item<double>() + c1.trace().item<double>() + c2.trace().item<double>() - 2 * tr_sqrt;
  require<DataError>(std::isfinite(fd), "Fréchet distance of ", what, " is not finite");
  return fd;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b, const std::string& what) {
  require<DataError>(a.count > 1 && b.count > 1, "Fréchet distance of ", what, ": ", a.count, " and ", b.count,
                     " samples (at least 2 each)");
  return frechet_distance(a.mean(), a.cov(), b.mean(), b.cov(), what);
}

}  // namespace mcm::eval
