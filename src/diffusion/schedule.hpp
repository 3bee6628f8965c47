// Noise schedules (diffusers conventions, float32 like diffusers): linear and scaled_linear betas,
// optional zero-terminal-SNR rescaling, alphas_cumprod; the consistency-model boundary scalings.
#pragma once
#include <torch/torch.h>

#include <string>

namespace mcm::diffusion {

struct ScheduleOptions {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;  ///< MCM / SD defaults
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  ///< "linear" or "scaled_linear"
  bool rescale_zero_terminal_snr = false;
};

enum class Prediction { epsilon, sample, v_prediction };
/// Parses "epsilon", "sample", "v_prediction"; throws ConfigError otherwise.
Prediction parse_prediction(const std::string& s);

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const ScheduleOptions& opt = {});
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  ///< [T] float32
  int64_t num_train_timesteps() const { return opt_.num_train_timesteps; }
  /// alphas_cumprod[t] as a 0-dim float32 tensor; t must be in [0, T).
  torch::Tensor abar(int64_t t) const;
  /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& eps, int64_t t) const;
  /// x0 from a model output at timestep t (epsilon, sample or v prediction).
  torch::Tensor predict_x0(const torch::Tensor& model_out, const torch::Tensor& x_t, int64_t t, Prediction p) const;

 private:
  ScheduleOptions opt_;
  torch::Tensor betas_, alphas_cumprod_;
};

/// Consistency boundary scalings (LCM/MCM): c_skip = sd^2 / ((t*s)^2 + sd^2),
/// c_out = t*s / sqrt((t*s)^2 + sd^2), computed in float32 as diffusers does for tensor timesteps.
std::pair<torch::Tensor, torch::Tensor> boundary_scalings(int64_t t, double timestep_scaling, double sigma_data = 0.5);

/// Classifier-free guidance: uncond + w * (cond - uncond).
torch::Tensor guidance(const torch::Tensor& cond, const torch::Tensor& uncond, double w);

}  // namespace mcm::diffusion
