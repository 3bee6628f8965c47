// The motion representations of disentangled motion distillation (MCM.md "Motion representation
// M"): the consistency loss compares M(student prediction) with M(target), so it constrains motion
// and leaves appearance to the frame discriminator. `learn` is the released default, a residual
// per-frame 1x1-conv head; `raw` (identity: plain LCM), `diff` (temporal difference) and `freq`
// (3-D Butterworth band of the FFT) are the paper's ablations. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <string>

namespace mcm::models {

enum class MotionKind { raw, diff, freq, learn };
/// "raw", "diff", "freq" or "learn"; ConfigError naming `key` and the choices otherwise.
MotionKind parse_motion_kind(const std::string& s, const std::string& key);
const char* to_string(MotionKind k);

struct MotionHeadConfig {
  int64_t channels = 4;  ///< latent channels
  int64_t hidden = 64;   ///< the head's width
  int64_t groups = 32;   ///< GroupNorm groups (hidden must be a multiple)
};

/// M(x) = x + conv2(silu(norm(conv1(silu(x))))) on every frame alone: x [B, C, T, H, W] is run as
/// B*T images [C, H, W], conv1/conv2 are 1x1 convolutions C -> hidden -> C, norm is
/// GroupNorm(groups, hidden) over one frame. conv2 starts at zero, so a fresh head is the identity.
/// Parameters: conv1.{weight,bias}, norm.{weight,bias}, conv2.{weight,bias}.
class MotionHeadImpl : public torch::nn::Module {
 public:
  explicit MotionHeadImpl(const MotionHeadConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  const MotionHeadConfig& config() const { return cfg_; }

 private:
  MotionHeadConfig cfg_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::GroupNorm norm{nullptr};
};
TORCH_MODULE(MotionHead);

/// x[:, :, 1:] - x[:, :, :-1] over the frame axis of [B, C, T, H, W] (T >= 2).
torch::Tensor temporal_difference(const torch::Tensor& x);

/// The 3-D Butterworth mask over (T, H, W) in fftshift order (zero frequency at index N / 2):
/// low = 1 / (1 + (d^2 / cutoff^2)^order) with d^2 = sum over the three axes of (2k / N - 1)^2,
/// the normalised distance from the centre (FreeInit's butterworth_low_pass_filter with equal
/// spatial and temporal cutoffs); high = 1 - low. float32 [T, H, W].
torch::Tensor butterworth_mask(int64_t frames, int64_t height, int64_t width, double cutoff, int64_t order, bool high_pass);

/// x filtered over its last three dims: real(ifftn(ifftshift(fftshift(fftn(x)) * mask))), in
/// float32. `mask` [T, H, W] from butterworth_mask.
torch::Tensor frequency_filter(const torch::Tensor& x, const torch::Tensor& mask);

/// M for the loss: one representation applied to [B, C, T, H, W] latents. For `learn` it runs the
/// given head (the online one for the prediction, its EMA copy for the target); for `freq` the
/// mask is built once per shape.
class MotionRepresentation {
 public:
  struct Options {
    MotionKind kind = MotionKind::learn;
    double freq_cutoff = 0.25;
    int64_t freq_order = 4;
    bool freq_high_pass = false;
  };
  explicit MotionRepresentation(Options o) : opt_(o) {}
  /// `head` is required for `learn` and ignored otherwise.
  torch::Tensor operator()(const torch::Tensor& x, MotionHead head = nullptr);
  const Options& options() const { return opt_; }

 private:
  Options opt_;
  torch::Tensor mask_;
};

}  // namespace mcm::models
