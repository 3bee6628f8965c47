// Fréchet distance between feature distributions (FVD with a video detector, FID-style frame
// quality with an image one): float64 moment sums that ranks reduce exactly, the population
// covariance (divided by N, as StyleGAN-V's FeatureStats), and the distance by symmetric
// eigen-decompositions. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace mcm::eval {

/// Sums of features and of their outer products in float64, and their count. Ranks add their
/// own features and all-reduce the three sums (exactly: float64 sums of float64 products), so
/// the moments do not depend on how the samples were dealt, up to float64 summation order.
struct FeatureStats {
  int64_t count = 0;
  torch::Tensor sum;    ///< [D] float64
  torch::Tensor outer;  ///< [D, D] float64: sum of x x^T

  /// Adds features [N, D] (any floating dtype, any device; summed on the CPU in float64).
  void add(const torch::Tensor& features);
  int64_t dim() const { return sum.defined() ? sum.size(0) : 0; }
  torch::Tensor mean() const;  ///< [D] float64
  /// Population covariance E[x x^T] - mu mu^T, [D, D] float64 (StyleGAN-V's convention, not N - 1).
  torch::Tensor cov() const;
  /// The sums as one float64 tensor [1 + D + D * D] (count first), for an all-reduce; and back.
  torch::Tensor flat() const;
  static FeatureStats from_flat(const torch::Tensor& flat, int64_t dim);
};

/// ||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2), with C1^1/2 from the
/// symmetric eigen-decomposition of C1 and the last trace from the eigenvalues of the symmetric
/// PSD matrix C1^1/2 C2 C1^1/2 (negative rounding clamped to 0): the same value as
/// tr(sqrtm(C1 C2)) without a non-symmetric square root. Float64; `what` names the sets in errors.
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& cov1, const torch::Tensor& mu2,
                        const torch::Tensor& cov2, const std::string& what = "features");
double frechet_distance(const FeatureStats& a, const FeatureStats& b, const std::string& what = "features");

}  // namespace mcm::eval
