// The optimisation pieces of the trainer: AdamW with named state (so checkpoints store it by the
// parameters' reference names), the cosine schedule with linear warm-up, clipping by global norm,
// an EMA of chosen weights, and dynamic loss scaling for fp16. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "train/train_config.hpp"

namespace mcm::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
using TensorMap = std::map<std::string, torch::Tensor>;

/// Learning rate at optimizer step `step` (0-based): linear warm-up from lr/warmup to lr over
/// warmup_steps, then cosine from lr to lr_min at `steps` (diffusers' get_cosine_schedule_with_warmup
/// with lr_min added).
double lr_at(const OptimConfig& o, int64_t step);

/// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias-corrected moments, eps outside
/// the square root), fp32 state per parameter. The state is keyed by parameter name.
class AdamW {
 public:
  /// `allow_fused`: use the fused kernel when every parameter is an fp32 CUDA tensor.
  AdamW(NamedTensors params, const OptimConfig& o, bool allow_fused = true);
  /// One update with learning rate lr; parameters without a gradient are skipped.
  void step(double lr);
  int64_t steps_taken() const { return t_; }
  /// "exp_avg.<name>", "exp_avg_sq.<name>" -> tensor (CPU copies), plus the step count separately.
  TensorMap state() const;
  /// Restores state(); DataError naming the missing or mis-shaped keys.
  void load_state(const TensorMap& state, int64_t steps_taken, const std::string& source);

 private:
  NamedTensors params_;
  std::vector<torch::Tensor> m_, v_;
  std::vector<torch::Tensor> steps_;  ///< fused path: the step count as the kernel reads it, one per parameter
  double b1_, b2_, eps_, wd_;
  int64_t t_ = 0;
  int64_t steps_held_ = 0;  ///< the count steps_ hold
  bool fused_ = false;  ///< every parameter an fp32 CUDA tensor: one fused multi-tensor kernel per step
};

/// Sets every gradient to zero in place (or creates zero gradients), ready for accumulation.
void zero_grads(const NamedTensors& params);

/// Global L2 norm of all gradients, without changing them: on the CPU a float64 sum of squares;
/// on a GPU per-tensor norms by one multi-tensor kernel (float32), combined in float64.
double grad_norm(const NamedTensors& params);
/// Scales all gradients by max_norm / (norm + 1e-6) when norm > max_norm (torch's clip_grad_norm_).
void clip_grads(const NamedTensors& params, double norm, double max_norm);
/// Multiplies all gradients by s.
void scale_grads(const NamedTensors& params, double s);

/// Exponential moving average of named weights: ema = decay * ema + (1 - decay) * w.
class Ema {
 public:
  Ema(const NamedTensors& params, double decay);
  void update(const NamedTensors& params);
  const TensorMap& weights() const { return shadow_; }
  TensorMap state() const;  ///< CPU copies
  void load_state(const TensorMap& state, const std::string& source);

 private:
  double decay_;
  TensorMap shadow_;
};

/// Dynamic loss scaling for fp16 (as torch.amp.GradScaler: x2 after `growth_interval` finite
/// steps, x0.5 and skip the step on a non-finite gradient).
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double init = 65536.0, int64_t growth_interval = 2000)
      : enabled_(enabled), scale_(enabled ? init : 1.0), growth_interval_(growth_interval) {}
  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  /// After a step: finite gradients grow the scale every growth_interval steps, else halve it.
  void update(bool finite);
  nlohmann::json state() const;
  void load_state(const nlohmann::json& j);

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_, good_steps_ = 0;
};

}  // namespace mcm::train
