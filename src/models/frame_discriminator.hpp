// MCM's frame discriminator heads (MCM.md "Frame discriminator"): the projected discriminator of
// StyleGAN-T / ADD. One head per backbone feature level, each judging every token of a frame:
//   conv0, bn0  h = LeakyReLU(0.2)(BN(spectral-norm Conv1d(C, C, 1)(x)))
//   conv1, bn1  h = (h + LeakyReLU(0.2)(BN(spectral-norm Conv1d(C, C, 9, circular)(h)))) / sqrt(2)
//   cls         spectral-norm Conv1d(C, cmap, 1)
//   logit per token = <cls(h), cmapper(text)> / sqrt(cmap), cmapper = Linear(text_dim, cmap)
// The backbone (frozen) is not part of this module: it hands over features [N, C, L] per level.
// Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace mcm::models {

// Note [spectral norm once per step]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// torch.nn.utils.spectral_norm runs one power iteration in every training-mode forward. The
// discriminator runs several forwards per micro-batch (generator pass, discriminator pass, the
// gradient penalty) and a rank runs more micro-batches when the world is smaller, so per-forward
// iterations would make the weights depend on how a global batch is split over ranks. Here every
// forward uses the stored u and v (torch's eval-mode formula: W / (u . W v), differentiable in W),
// and power_iteration() advances u and v once per optimizer step, on every rank alike. The
// estimate converges the same way; the weights no longer depend on the world size.

/// Conv1d whose weight is divided by its spectral norm estimate. Parameters weight_orig, bias;
/// buffers weight_u [out], weight_v [in * k] (torch.nn.utils.spectral_norm's names).
class SpectralConv1dImpl : public torch::nn::Module {
 public:
  SpectralConv1dImpl(int64_t in, int64_t out, int64_t kernel, bool circular);
  /// x [N, in, L] -> [N, out, L] with weight_orig / sigma, sigma = u . (W v), W = weight_orig as [out, in * k].
  torch::Tensor forward(const torch::Tensor& x);
  /// One power iteration: v = normalize(W^T u), u = normalize(W v) (eps 1e-12), without grad.
  void power_iteration();
  torch::Tensor weight_orig, bias, weight_u, weight_v;

 private:
  int64_t kernel_;
  bool circular_;
};
TORCH_MODULE(SpectralConv1d);

/// StyleGAN-T's BatchNormLocal: the batch split into ceil(N / virtual_batch) consecutive groups,
/// each normalised over (its samples, tokens) per channel (biased variance, eps 1e-5), then an
/// affine weight and bias. No running statistics: training and evaluation behave the same.
/// N must be a multiple of the group count.
class BatchNormLocalImpl : public torch::nn::Module {
 public:
  BatchNormLocalImpl(int64_t channels, int64_t virtual_batch);
  torch::Tensor forward(const torch::Tensor& x);  ///< [N, C, L]
  torch::Tensor weight, bias;

 private:
  int64_t virtual_batch_;
};
TORCH_MODULE(BatchNormLocal);

struct DiscHeadOptions {
  int64_t channels = 384;     ///< feature width of this level
  int64_t text_dim = 1024;    ///< conditioning vector width
  int64_t cmap_dim = 64;      ///< projection width
  int64_t virtual_batch = 8;  ///< local batch norm group size
};

class DiscHeadImpl : public torch::nn::Module {
 public:
  explicit DiscHeadImpl(const DiscHeadOptions& o);
  /// x [N, C, L], c [N, text_dim] -> logits [N, L].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c);

 private:
  DiscHeadOptions o_;
  SpectralConv1d conv0{nullptr}, conv1{nullptr}, cls{nullptr};
  BatchNormLocal bn0{nullptr}, bn1{nullptr};
  torch::nn::Linear cmapper{nullptr};
};
TORCH_MODULE(DiscHead);

/// The heads of every feature level. Parameter names: heads.<level>.{conv0, bn0, conv1, bn1, cls,
/// cmapper}.* (the spectral-norm convs' weight_orig and bias, weight_u and weight_v buffers).
class FrameDiscriminatorImpl : public torch::nn::Module {
 public:
  /// One head per entry of `channels` (the backbone's feature widths).
  FrameDiscriminatorImpl(const std::vector<int64_t>& channels, int64_t text_dim, int64_t cmap_dim, int64_t virtual_batch);
  /// features[l] [N, C_l, L_l], c [N, text_dim] -> the logits of every level concatenated [N, sum L_l].
  torch::Tensor forward(const std::vector<torch::Tensor>& features, const torch::Tensor& c);
  /// power_iteration() of every spectral-norm conv (Note [spectral norm once per step]).
  void power_iteration();
  size_t levels() const { return heads_.size(); }

 private:
  std::vector<DiscHead> heads_;
};
TORCH_MODULE(FrameDiscriminator);

/// Hinge losses: discriminator mean(relu(1 - real)) + mean(relu(1 + fake)); generator -mean(fake).
torch::Tensor hinge_d_loss(const torch::Tensor& real_logits, const torch::Tensor& fake_logits);
torch::Tensor hinge_g_loss(const torch::Tensor& fake_logits);

/// The gradient penalty on interpolates (MCM.md, "R1" in the reference): per level mix =
/// alpha * real + (1 - alpha) * fake with alpha [N] per frame, g = d(sum D(mix, c)) / d(mix) (with a
/// graph, so the penalty trains D), ||g|| per frame over all levels together, mean((||g|| - 1)^2).
torch::Tensor gradient_penalty(FrameDiscriminator& d, const std::vector<torch::Tensor>& real,
                               const std::vector<torch::Tensor>& fake, const torch::Tensor& c, const torch::Tensor& alpha);

/// MCM's adaptive penalty weight: x `factor` when the step's penalty exceeds `threshold` and at
/// least `min_interval` steps have passed since the last raise (or none happened yet).
struct GpWeightRule {
  double factor = 5.0, threshold = 100.0;
  int64_t min_interval = 500;
  /// New weight after optimizer step `step` with penalty `gp`; updates last_raise when it raises.
  double next(double weight, double gp, int64_t step, int64_t& last_raise) const;
};

}  // namespace mcm::models
