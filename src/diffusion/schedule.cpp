// Noise schedule implementation; every formula follows diffusers' schedulers operation by operation
// so that results agree to float32 rounding.
#include "diffusion/schedule.hpp"

#include <cmath>

#include "core/error.hpp"

namespace mcm::diffusion {

Prediction parse_prediction(const std::string& s) {
  if (s == "epsilon") return Prediction::epsilon;
  if (s == "sample") return Prediction::sample;
  if (s == "v_prediction") return Prediction::v_prediction;
  throw ConfigError(cat("prediction_type \"", s, "\": expected epsilon, sample or v_prediction"));
}

NoiseSchedule::NoiseSchedule(const ScheduleOptions& opt) : opt_(opt) {
  require<ConfigError>(opt.num_train_timesteps > 1, "num_train_timesteps = ", opt.num_train_timesteps, ": must be > 1");
  require<ConfigError>(opt.beta_start > 0 && opt.beta_end > opt.beta_start && opt.beta_end < 1, "betas [",
                       opt.beta_start, ", ", opt.beta_end, "]: need 0 < beta_start < beta_end < 1");
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  if (opt.beta_schedule == "linear") {
    betas_ = torch::linspace(opt.beta_start, opt.beta_end, opt.num_train_timesteps, f32);
  } else if (opt.beta_schedule == "scaled_linear") {
    betas_ = torch::linspace(std::sqrt(opt.beta_start), std::sqrt(opt.beta_end), opt.num_train_timesteps, f32).pow(2);
  } else {
    throw ConfigError(cat("beta_schedule \"", opt.beta_schedule, "\": expected linear or scaled_linear"));
  }
  if (opt.rescale_zero_terminal_snr) {
    // Lin et al. 2023, Algorithm 1: shift and scale sqrt(abar) so that abar_T = 0, keep abar_0.
    auto abar_sqrt = torch::cumprod(1.0 - betas_, 0).sqrt();
    auto a0 = abar_sqrt[0].clone(), aT = abar_sqrt[-1].clone();
    abar_sqrt -= aT;
    abar_sqrt *= a0 / (a0 - aT);
    auto abar = abar_sqrt.pow(2);
    auto alphas = torch::cat({abar.slice(0, 0, 1), abar.slice(0, 1) / abar.slice(0, 0, -1)});
    betas_ = 1 - alphas;
  }
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
}

torch::Tensor NoiseSchedule::abar(int64_t t) const {
  require<DataError>(t >= 0 && t < opt_.num_train_timesteps, "timestep ", t, " outside [0, ", opt_.num_train_timesteps, ")");
  return alphas_cumprod_[t];
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& eps, int64_t t) const {
  auto a = abar(t).to(x0.dtype());
  return a.sqrt() * x0 + (1 - a).sqrt() * eps;
}

torch::Tensor NoiseSchedule::predict_x0(const torch::Tensor& out, const torch::Tensor& x, int64_t t, Prediction p) const {
  auto a = abar(t);
  auto b = 1 - a;
  switch (p) {
    case Prediction::epsilon: return (x - b.pow(0.5) * out) / a.pow(0.5);
    case Prediction::sample: return out;
    case Prediction::v_prediction: return a.pow(0.5) * x - b.pow(0.5) * out;
  }
  return out;
}

std::pair<torch::Tensor, torch::Tensor> boundary_scalings(int64_t t, double scaling, double sigma_data) {
  auto st = torch::scalar_tensor(t, torch::kInt64) * scaling;  // float32, as diffusers with a tensor timestep
  auto sd2 = sigma_data * sigma_data;
  auto c_skip = sd2 / (st.pow(2) + sd2);
  auto c_out = st / (st.pow(2) + sd2).pow(0.5);
  return {c_skip, c_out};
}

torch::Tensor guidance(const torch::Tensor& cond, const torch::Tensor& uncond, double w) {
  return uncond + w * (cond - uncond);
}

}  // namespace mcm::diffusion
