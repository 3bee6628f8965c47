// DDIM and LCM samplers. Timestep lists reproduce numpy's rounding in diffusers' set_timesteps.
#include "diffusion/samplers.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace mcm::diffusion {
namespace {
// "trailing" spacing, shared by DDIM and DPM-Solver: np.round(np.arange(T, 0, -T/n)) - 1, where
// arange yields ceil(T / ratio) values start + k * step.
std::vector<int64_t> trailing_timesteps(int64_t T, int64_t steps) {
  const double ratio = static_cast<double>(T) / steps;
  const auto count = static_cast<int64_t>(std::ceil(static_cast<double>(T) / ratio));
  std::vector<int64_t> out;
  for (int64_t k = 0; k < count; ++k) out.push_back(static_cast<int64_t>(std::nearbyint(static_cast<double>(T) + k * -ratio)) - 1);
  return out;
}
}  // namespace

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
    timesteps_ = trailing_timesteps(T, steps);
  } else {
    throw ConfigError(cat("timestep_spacing \"", opt_.timestep_spacing, "\": expected leading, trailing or linspace"));
  }
  return timesteps_;
}

StepResult DdimSampler::step(const torch::Tensor& out, int64_t t, const torch::Tensor& x, const torch::Tensor& noise) const {
  require<DataError>(steps_ > 0, "DDIM step before set_timesteps");
  const int64_t prev = t - schedule_.num_train_timesteps() / steps_;
  auto a_prev = prev >= 0 ? schedule_.abar(prev) : final_abar_;
  auto x0 = schedule_.predict_x0(out, x, t, opt_.prediction);
  auto eps = schedule_.predict_eps(out, x, t, opt_.prediction);  // from the unclipped x0, as diffusers
  if (opt_.clip_sample) x0 = x0.clamp(-opt_.clip_sample_range, opt_.clip_sample_range);
  if (opt_.eta == 0) return {a_prev.pow(0.5) * x0 + (1 - a_prev).pow(0.5) * eps, x0};
  require<DataError>(noise.defined() && noise.sizes() == x.sizes(), "DDIM step with eta = ", opt_.eta,
                     " needs noise shaped like the sample");
  // sigma_t = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) (DDIM eq. 16).
  auto a_t = schedule_.abar(t);
  auto variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev);
  auto std_dev = opt_.eta * variance.pow(0.5);
  // 1 - abar_prev - sigma^2 is exactly 0 when abar_t = 0 (zero terminal SNR, eta = 1); float32
  // rounding can leave -6e-8 there, whose root is NaN (as in diffusers): clamp at 0.
  auto direction = (1 - a_prev - std_dev * std_dev).clamp_min(0).pow(0.5) * eps;
  return {a_prev.pow(0.5) * x0 + direction + std_dev * noise, x0};
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
  auto b_prev = 1 - a_prev;
  auto [c_skip, c_out] = boundary_scalings(t, opt_.timestep_scaling);
  auto x0 = schedule_.predict_x0(out, x, t, opt_.prediction);
  if (opt_.clip_sample) x0 = x0.clamp(-opt_.clip_sample_range, opt_.clip_sample_range);
  auto denoised = c_out * x0 + c_skip * x;
  if (last) return {denoised, denoised};
  return {a_prev.sqrt() * denoised + b_prev.sqrt() * noise, denoised};
}

DpmSolverSampler::DpmSolverSampler(const NoiseSchedule& schedule, DpmSolverOptions opt)
    : schedule_(schedule), opt_(std::move(opt)) {}

const std::vector<int64_t>& DpmSolverSampler::set_timesteps(int64_t steps) {
  const int64_t T = schedule_.num_train_timesteps();
  require<ConfigError>(steps >= 1 && steps <= T, "DPM-Solver steps = ", steps, ": must be in [1, ", T, "]");
  timesteps_.clear();
  if (opt_.timestep_spacing == "linspace") {
    // np.linspace(0, T-1, n+1).round()[::-1][:-1]
    for (int64_t i = steps; i >= 1; --i)
      timesteps_.push_back(static_cast<int64_t>(std::nearbyint(static_cast<double>(T - 1) * i / steps)));
  } else if (opt_.timestep_spacing == "leading") {
    int64_t ratio = T / (steps + 1);
    for (int64_t i = steps; i >= 1; --i) timesteps_.push_back(i * ratio + opt_.steps_offset);
  } else if (opt_.timestep_spacing == "trailing") {
    timesteps_ = trailing_timesteps(T, steps);
  } else {
    throw ConfigError(cat("timestep_spacing \"", opt_.timestep_spacing, "\": expected leading, trailing or linspace"));
  }
  auto ac = schedule_.alphas_cumprod().clone();
  // A zero-terminal-SNR schedule has abar_{T-1} = 0, an infinite sigma: diffusers sets it to
  // 2^-24 in DPMSolverMultistepScheduler (rescale_betas_zero_snr), and so do we.
  if (ac[-1].item<float>() == 0.0f) ac[-1] = std::ldexp(1.0f, -24);
  auto all = ((1 - ac) / ac).pow(0.5);  // float32, as diffusers computes sigmas before indexing
  sigmas_.clear();
  for (auto t : timesteps_) sigmas_.push_back(all[t].clone());
  sigmas_.push_back(torch::scalar_tensor(0.0, torch::kFloat32));  // final_sigmas_type "zero"
  prev_x0_ = torch::Tensor();
  next_index_ = 0;
  return timesteps_;
}

namespace {
// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t, lambda = log(alpha_t) - log(sigma_t).
struct AlphaSigma { torch::Tensor alpha, sigma, lambda; };
AlphaSigma alpha_sigma(const torch::Tensor& s) {
  auto alpha = 1 / (s.pow(2) + 1).pow(0.5);
  auto sigma = s * alpha;
  return {alpha, sigma, torch::log(alpha) - torch::log(sigma)};
}
}  // namespace

StepResult DpmSolverSampler::step(const torch::Tensor& out, size_t index, const torch::Tensor& x) {
  require<DataError>(index < timesteps_.size(), "DPM-Solver step ", index, " of ", timesteps_.size(), " (call set_timesteps)");
  require<DataError>(index == next_index_, "DPM-Solver steps must run in order: got ", index, ", expected ", next_index_);
  const size_t n = timesteps_.size();
  auto s0 = alpha_sigma(sigmas_[index]);
  torch::Tensor x0;
  switch (opt_.prediction) {
    case Prediction::epsilon: x0 = (x - s0.sigma * out) / s0.alpha; break;
    case Prediction::sample: x0 = out; break;
    case Prediction::v_prediction: x0 = s0.alpha * x - s0.sigma * out; break;
  }
  auto t = alpha_sigma(sigmas_[index + 1]);
  auto h = t.lambda - s0.lambda;
  // lower_order_final: the last step is first order (always, with a zero final sigma);
  // the first step has no history.
  const bool first_order = index == 0 || index + 1 == n;
  torch::Tensor prev;
  if (first_order) {
    prev = (t.sigma / s0.sigma) * x - (t.alpha * (torch::exp(-h) - 1.0)) * x0;
  } else {
    auto s1 = alpha_sigma(sigmas_[index - 1]);
    auto h0 = s0.lambda - s1.lambda;
    auto r0 = h0 / h;
    auto d1 = (1.0 / r0) * (x0 - prev_x0_);
    prev = (t.sigma / s0.sigma) * x - (t.alpha * (torch::exp(-h) - 1.0)) * x0 - 0.5 * (t.alpha * (torch::exp(-h) - 1.0)) * d1;
  }
  prev_x0_ = x0;
  ++next_index_;
  return {prev, x0};
}

}  // namespace mcm::diffusion
