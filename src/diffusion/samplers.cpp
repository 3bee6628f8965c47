// DDIM and LCM samplers. Timestep lists reproduce numpy's rounding in diffusers' set_timesteps.
#include "diffusion/samplers.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace mcm::diffusion {

DdimSampler::DdimSampler(const NoiseSchedule& schedule, DdimOptions opt) : schedule_(schedule), opt_(std::move(opt)) {
  final_abar_ = opt_.set_alpha_to_one ? torch::scalar_tensor(1.0, torch::kFloat32) : schedule_.alphas_cumprod()[0];
}

const std::vector<int64_t>& DdimSampler::set_timesteps(int64_t steps) {
  const int64_t T = schedule_.num_train_timesteps();
  require<ConfigError>(steps >= 1 && steps <= T, "DDIM steps = ", steps, ": must be in [1, ", T, "]");
  steps_ = steps;
  timesteps_.clear();
  if (opt_.timestep_spacing == "linspace") {
    // np.linspace(0, T-1, n).round()[::-1]; numpy rounds half to even (std::nearbyint does too).
    for (int64_t i = steps - 1; i >= 0; --i) {
      double v = steps == 1 ? 0.0 : static_cast<double>(T - 1) * i / (steps - 1);
      timesteps_.push_back(static_cast<int64_t>(std::nearbyint(v)));
    }
  } else if (opt_.timestep_spacing == "leading") {
    int64_t ratio = T / steps;
    for (int64_t i = steps - 1; i >= 0; --i) timesteps_.push_back(i * ratio + opt_.steps_offset);
  } else if (opt_.timestep_spacing == "trailing") {
    double ratio = static_cast<double>(T) / steps;
    // np.round(np.arange(T, 0, -ratio)) - 1: arange computes start + k * step.
    const auto count = static_cast<int64_t>(std::ceil(static_cast<double>(T) / ratio));  // numpy's length
    for (int64_t k = 0; k < count; ++k)
      timesteps_.push_back(static_cast<int64_t>(std::nearbyint(static_cast<double>(T) + k * -ratio)) - 1);
  } else {
    throw ConfigError(cat("timestep_spacing \"", opt_.timestep_spacing, "\": expected leading, trailing or linspace"));
  }
  return timesteps_;
}

StepResult DdimSampler::step(const torch::Tensor& out, int64_t t, const torch::Tensor& x) const {
  require<DataError>(steps_ > 0, "DDIM step before set_timesteps");
  const int64_t prev = t - schedule_.num_train_timesteps() / steps_;
  auto a = schedule_.abar(t);
  auto a_prev = prev >= 0 ? schedule_.abar(prev) : final_abar_;
  auto b = 1 - a;
  torch::Tensor x0, eps;
  switch (opt_.prediction) {
    case Prediction::epsilon:
      x0 = (x - b.pow(0.5) * out) / a.pow(0.5);
      eps = out;
      break;
    case Prediction::sample:
      x0 = out;
      eps = (x - a.pow(0.5) * x0) / b.pow(0.5);
      break;
    case Prediction::v_prediction:
      x0 = a.pow(0.5) * x - b.pow(0.5) * out;
      eps = a.pow(0.5) * out + b.pow(0.5) * x;
      break;
  }
  if (opt_.clip_sample) x0 = x0.clamp(-opt_.clip_sample_range, opt_.clip_sample_range);
  // eta = 0: no variance term; the direction uses (1 - abar_prev - 0)^0.5.
  auto direction = (1 - a_prev).pow(0.5) * eps;
  return {a_prev.pow(0.5) * x0 + direction, x0};
}

LcmSampler::LcmSampler(const NoiseSchedule& schedule, LcmOptions opt) : schedule_(schedule), opt_(std::move(opt)) {
  final_abar_ = opt_.set_alpha_to_one ? torch::scalar_tensor(1.0, torch::kFloat32) : schedule_.alphas_cumprod()[0];
}

std::vector<int64_t> ddim_solver_grid(int64_t T, int64_t n) {
  require<ConfigError>(n >= 1 && n <= T, "solver grid of ", n, " steps over ", T, " timesteps");
  std::vector<int64_t> g;
  const int64_t k = T / n;
  for (int64_t i = 1; i <= n; ++i) g.push_back(i * k - 1);
  return g;
}

const std::vector<int64_t>& LcmSampler::set_timesteps(int64_t steps) {
  const int64_t original = opt_.original_inference_steps;
  require<ConfigError>(original >= 1 && original <= schedule_.num_train_timesteps(), "LCM original_inference_steps = ",
                       original, " must be in [1, ", schedule_.num_train_timesteps(), "]");
  require<ConfigError>(steps >= 1 && steps <= original, "LCM steps = ", steps, ": must be in [1, ",
                       "original_inference_steps = ", original, "]");
  auto grid = ddim_solver_grid(schedule_.num_train_timesteps(), original);
  std::reverse(grid.begin(), grid.end());
  timesteps_.clear();
  // floor(np.linspace(0, len, steps, endpoint=False)): index i * len / steps.
  for (int64_t i = 0; i < steps; ++i) {
    double v = static_cast<double>(i) * static_cast<double>(grid.size()) / static_cast<double>(steps);
    timesteps_.push_back(grid[static_cast<size_t>(std::floor(v))]);
  }
  return timesteps_;
}

StepResult LcmSampler::step(const torch::Tensor& out, size_t index, const torch::Tensor& x, const torch::Tensor& noise) const {
  require<DataError>(index < timesteps_.size(), "LCM step ", index, " of ", timesteps_.size(), " (call set_timesteps)");
  const int64_t t = timesteps_[index];
  const bool last = index + 1 == timesteps_.size();
  const int64_t prev = last ? t : timesteps_[index + 1];
  auto a = schedule_.abar(t);
  auto a_prev = prev >= 0 ? schedule_.abar(prev) : final_abar_;
  auto b = 1 - a, b_prev = 1 - a_prev;
  auto [c_skip, c_out] = boundary_scalings(t, opt_.timestep_scaling);
  torch::Tensor x0;
  switch (opt_.prediction) {
    case Prediction::epsilon: x0 = (x - b.sqrt() * out) / a.sqrt(); break;
    case Prediction::sample: x0 = out; break;
    case Prediction::v_prediction: x0 = a.sqrt() * x - b.sqrt() * out; break;
  }
  if (opt_.clip_sample) x0 = x0.clamp(-opt_.clip_sample_range, opt_.clip_sample_range);
  auto denoised = c_out * x0 + c_skip * x;
  if (last) return {denoised, denoised};
  return {a_prev.sqrt() * denoised + b_prev.sqrt() * noise, denoised};
}

}  // namespace mcm::diffusion
