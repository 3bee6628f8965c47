// Noise schedules (diffusers conventions, float32 like diffusers): linear and scaled_linear betas,
// optional zero-terminal-SNR rescaling, alphas_cumprod; the consistency-model boundary scalings.
#pragma once
#include <torch/torch.h>

#include <string>

// Note [per-sample timesteps]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Consistency distillation draws one timestep per sample, so the schedule takes timesteps as an
// integer tensor t: 0-dim (one timestep for the whole batch, as a sampler step) or [B] (one per
// sample, B = x.size(0)). Per-sample schedule values are gathered on x's device and viewed as
// [B, 1, ..., 1] over the remaining dims, as diffusers' add_noise (flatten, unsqueeze) and the
// LCM/MCM training code (extract_into_tensor, append_dims) do. Timesteps are range-checked, which
// reads them on the host (one sync when they live on a GPU). The int64_t overloads are the 0-dim
// case and give the same bits as before. dtypes follow the references: add_noise casts abar to
// x0's dtype (DDPMScheduler.add_noise); predict_x0/predict_eps and the DDIM solver compute with
// the float32 schedule, so a [B] float32 factor promotes half inputs to float32 as in MCM's
// training code, while a 0-dim one (PyTorch treats it as a scalar) keeps the input dtype as in a
// diffusers scheduler step.

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
  /// alphas_cumprod at integer timesteps t of any shape: float32, t's shape and device; every t
  /// must be in [0, T).
  torch::Tensor abar(const torch::Tensor& t) const;
  /// abar(t) where t >= 0; where t < 0 (a step past the end of the trajectory) the final value of
  /// diffusers' DDIM convention: 1 with set_alpha_to_one, else abar_0.
  torch::Tensor abar_prev(const torch::Tensor& t, bool set_alpha_to_one) const;
  /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per sample (Note [per-sample timesteps]).
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const;
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& eps, int64_t t) const;
  /// The v-prediction target sqrt(abar_t) eps - sqrt(1 - abar_t) x0, per sample (diffusers'
  /// get_velocity).
  torch::Tensor velocity(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const;
  /// x0 from a model output at timesteps t (epsilon, sample or v prediction), per sample.
  torch::Tensor predict_x0(const torch::Tensor& model_out, const torch::Tensor& x_t, const torch::Tensor& t, Prediction p) const;
  torch::Tensor predict_x0(const torch::Tensor& model_out, const torch::Tensor& x_t, int64_t t, Prediction p) const;
  /// The noise eps from a model output at timesteps t, per sample (as DDIMScheduler.step).
  torch::Tensor predict_eps(const torch::Tensor& model_out, const torch::Tensor& x_t, const torch::Tensor& t, Prediction p) const;
  torch::Tensor predict_eps(const torch::Tensor& model_out, const torch::Tensor& x_t, int64_t t, Prediction p) const;

 private:
  ScheduleOptions opt_;
  torch::Tensor betas_, alphas_cumprod_;
};

/// v ([B] or 0-dim) viewed as [B, 1, ..., 1] to broadcast over a batch like x (0-dim stays 0-dim);
/// throws DataError unless v has one value per sample of x.
torch::Tensor per_sample(const torch::Tensor& v, const torch::Tensor& x);

/// Consistency boundary scalings (LCM/MCM): c_skip = sd^2 / ((t*s)^2 + sd^2),
/// c_out = t*s / sqrt((t*s)^2 + sd^2), elementwise over timesteps t (any shape, integer or float;
/// float32 for integer t, as diffusers' get_scalings_for_boundary_condition_discrete with a tensor).
/// MCM uses timestep_scaling 4 (LcmOptions' default); diffusers' LCMScheduler default is 10.
std::pair<torch::Tensor, torch::Tensor> boundary_scalings(const torch::Tensor& t, double timestep_scaling, double sigma_data = 0.5);
std::pair<torch::Tensor, torch::Tensor> boundary_scalings(int64_t t, double timestep_scaling, double sigma_data = 0.5);

/// Classifier-free guidance: uncond + w * (cond - uncond).
torch::Tensor guidance(const torch::Tensor& cond, const torch::Tensor& uncond, double w);

}  // namespace mcm::diffusion
