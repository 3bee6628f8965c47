// Noise schedule implementation; every formula follows diffusers' schedulers operation by operation
// so that results agree to float32 rounding.
#include "diffusion/schedule.hpp"

#include <cmath>
#include <limits>

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

namespace {
// Timesteps must be integers in [lo, T); reads min and max on the host (one sync on a GPU).
void check_timesteps(const torch::Tensor& t, int64_t lo, int64_t T) {
  require<DataError>(t.defined(), "timesteps: undefined tensor");
  require<DataError>(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), "timesteps of dtype ", t.scalar_type(),
                     ": expected integers");
  if (t.numel() == 0) return;
  auto r = torch::stack({t.min(), t.max()}).to(torch::kCPU, torch::kInt64);
  const int64_t a = r[0].item<int64_t>(), b = r[1].item<int64_t>();
  require<DataError>(a >= lo && b < T, "timesteps in [", a, ", ", b, "] outside [", lo, ", ", T, ")");
}

// The formulas shared by the int64_t and tensor forms; `a` is abar_t, already shaped to broadcast.
torch::Tensor x0_from(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& a, Prediction p) {
  auto b = 1 - a;
  switch (p) {
    case Prediction::epsilon: return (x - b.pow(0.5) * out) / a.pow(0.5);
    case Prediction::sample: return out;
    case Prediction::v_prediction: return a.pow(0.5) * x - b.pow(0.5) * out;
  }
  return out;
}

torch::Tensor eps_from(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& a, Prediction p) {
  auto b = 1 - a;
  switch (p) {
    case Prediction::epsilon: return out;
    case Prediction::sample: return (x - a.pow(0.5) * out) / b.pow(0.5);
    case Prediction::v_prediction: return a.pow(0.5) * out + b.pow(0.5) * x;
  }
  return out;
}

// A gathered [B] factor on x's device, viewed per sample; 0-dim stays a (CPU) scalar tensor.
torch::Tensor factor_for(const torch::Tensor& a, const torch::Tensor& x) {
  return a.dim() == 0 ? a : per_sample(a, x).to(x.device());
}
}  // namespace

torch::Tensor NoiseSchedule::abar(int64_t t) const {
  require<DataError>(t >= 0 && t < opt_.num_train_timesteps, "timestep ", t, " outside [0, ", opt_.num_train_timesteps, ")");
  return alphas_cumprod_[t];
}

torch::Tensor NoiseSchedule::abar(const torch::Tensor& t) const {
  check_timesteps(t, 0, opt_.num_train_timesteps);
  return alphas_cumprod_.to(t.device()).take(t.to(torch::kInt64));
}

torch::Tensor NoiseSchedule::abar_prev(const torch::Tensor& t, bool set_alpha_to_one) const {
  check_timesteps(t, std::numeric_limits<int64_t>::min(), opt_.num_train_timesteps);
  auto ac = alphas_cumprod_.to(t.device());
  auto final_abar = set_alpha_to_one ? torch::ones({}, ac.options()) : ac[0];
  auto ti = t.to(torch::kInt64);
  return torch::where(ti >= 0, ac.take(ti.clamp_min(0)), final_abar);
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const {
  auto a = factor_for(abar(t), x0).to(x0.scalar_type());
  return a.sqrt() * x0 + (1 - a).sqrt() * eps;
}

torch::Tensor NoiseSchedule::velocity(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const {
  auto a = factor_for(abar(t), x0).to(x0.scalar_type());
  return a.sqrt() * eps - (1 - a).sqrt() * x0;
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& eps, int64_t t) const {
  auto a = abar(t).to(x0.dtype());
  return a.sqrt() * x0 + (1 - a).sqrt() * eps;
}

torch::Tensor NoiseSchedule::predict_x0(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& t, Prediction p) const {
  return x0_from(out, x, factor_for(abar(t), x), p);
}

torch::Tensor NoiseSchedule::predict_x0(const torch::Tensor& out, const torch::Tensor& x, int64_t t, Prediction p) const {
  return x0_from(out, x, abar(t), p);
}

torch::Tensor NoiseSchedule::predict_eps(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& t, Prediction p) const {
  return eps_from(out, x, factor_for(abar(t), x), p);
}

torch::Tensor NoiseSchedule::predict_eps(const torch::Tensor& out, const torch::Tensor& x, int64_t t, Prediction p) const {
  return eps_from(out, x, abar(t), p);
}

torch::Tensor per_sample(const torch::Tensor& v, const torch::Tensor& x) {
  if (v.dim() == 0) return v;
  require<DataError>(v.dim() == 1 && x.dim() >= 1 && v.size(0) == x.size(0), "per-sample values of shape ", v.sizes(),
                     " for a batch of shape ", x.sizes(), ": expected one value per sample, shape [",
                     x.dim() >= 1 ? x.size(0) : 0, "]");
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = v.size(0);
  return v.reshape(shape);
}

std::pair<torch::Tensor, torch::Tensor> boundary_scalings(const torch::Tensor& t, double scaling, double sigma_data) {
  auto st = t * scaling;  // float32 for integer t, as diffusers with a tensor timestep
  auto sd2 = sigma_data * sigma_data;
  auto c_skip = sd2 / (st.pow(2) + sd2);
  auto c_out = st / (st.pow(2) + sd2).pow(0.5);
  return {c_skip, c_out};
}

std::pair<torch::Tensor, torch::Tensor> boundary_scalings(int64_t t, double scaling, double sigma_data) {
  return boundary_scalings(torch::scalar_tensor(t, torch::kInt64), scaling, sigma_data);
}

torch::Tensor guidance(const torch::Tensor& cond, const torch::Tensor& uncond, double w) {
  return uncond + w * (cond - uncond);
}

}  // namespace mcm::diffusion
