// DDIM solver steps between per-sample timesteps; formulas as DDIMScheduler.step, operation by
// operation, so a per-sample step equals diffusers' scalar step for each sample.
#include "diffusion/solver.hpp"

#include "core/error.hpp"

namespace mcm::diffusion {

SolverTimesteps solver_timesteps(const torch::Tensor& index, int64_t T, int64_t n) {
  require<ConfigError>(n >= 1 && n <= T, "solver grid of ", n, " steps over ", T, " timesteps");
  require<DataError>(at::isIntegralType(index.scalar_type(), /*includeBool=*/false), "solver grid indices of dtype ",
                     index.scalar_type(), ": expected integers");
  if (index.numel() > 0) {
    auto r = torch::stack({index.min(), index.max()}).to(torch::kCPU, torch::kInt64);
    require<DataError>(r[0].item<int64_t>() >= 0 && r[1].item<int64_t>() < n, "solver grid indices in [", r[0].item<int64_t>(),
                       ", ", r[1].item<int64_t>(), "] outside [0, ", n, ")");
  }
  const int64_t k = T / n;
  auto t = (index.to(torch::kInt64) + 1) * k - 1;
  return {t, (t - k).clamp_min(0)};
}

torch::Tensor ddim_solver_step(const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                               const torch::Tensor& s, bool set_alpha_to_one) {
  auto a_prev = schedule.abar_prev(s, set_alpha_to_one);
  if (a_prev.dim() > 0) a_prev = per_sample(a_prev, x0).to(x0.device());
  // eta = 0: no variance term; the direction uses (1 - abar_prev - 0)^0.5 as DDIMScheduler.
  return a_prev.pow(0.5) * x0 + (1 - a_prev).pow(0.5) * eps;
}

StepResult ddim_step(const NoiseSchedule& schedule, const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& t,
                     const torch::Tensor& s, Prediction p, bool set_alpha_to_one) {
  auto x0 = schedule.predict_x0(out, x, t, p);
  auto eps = schedule.predict_eps(out, x, t, p);
  return {ddim_solver_step(schedule, x0, eps, s, set_alpha_to_one), x0};
}

}  // namespace mcm::diffusion
