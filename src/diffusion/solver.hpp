// The DDIM solver of consistency distillation (MCM.md "Consistency distillation"): per-sample
// timesteps on the solver grid and one teacher step t -> s per sample (Note [per-sample timesteps]).
#pragma once
#include <torch/torch.h>

#include "diffusion/samplers.hpp"
#include "diffusion/schedule.hpp"

namespace mcm::diffusion {

/// Per-sample start and target timesteps of one distillation step.
struct SolverTimesteps {
  torch::Tensor t;  ///< tau_i = k(i + 1) - 1, k = T / n (int64, index's shape and device)
  torch::Tensor s;  ///< max(t - k, 0): one solver step below t, clamped at 0 as LCM/MCM do
};
/// The grid timesteps for grid indices i in [0, n) (drawn per sample, e.g. rng uniform_int(0, n-1)).
SolverTimesteps solver_timesteps(const torch::Tensor& index, int64_t num_train_timesteps, int64_t n);

/// One deterministic DDIM step (eta = 0) from per-sample predictions to timesteps s:
/// x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps. s = 0 uses abar_0 (MCM's DDIMSolver, whose
/// previous alpha at grid index 0 is alphas_cumprod[0]); s < 0 uses diffusers' final alpha, 1 with
/// set_alpha_to_one, else abar_0. Computed in float32, like DDIMScheduler (the reference
/// DDIMSolver keeps its tables in float64; the difference is float32 rounding).
torch::Tensor ddim_solver_step(const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                               const torch::Tensor& s, bool set_alpha_to_one = true);

/// A whole DDIM step from a model output at per-sample timesteps t to s: x0 and eps predicted at
/// t, then ddim_solver_step. Returns {x_s, x0}; per sample it equals DDIMScheduler.step (eta 0,
/// no clipping) from t to s. Classifier-free guidance combines x0 and eps before the step, so the
/// distillation step calls predict_x0, predict_eps, guidance and ddim_solver_step itself.
StepResult ddim_step(const NoiseSchedule& schedule, const torch::Tensor& model_out, const torch::Tensor& x_t,
                     const torch::Tensor& t, const torch::Tensor& s, Prediction p = Prediction::epsilon,
                     bool set_alpha_to_one = true);

}  // namespace mcm::diffusion
