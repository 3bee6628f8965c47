// Samplers over a NoiseSchedule, matching diffusers' DDIMScheduler (any eta) and LCMScheduler:
// the same timestep lists for every spacing and the same per-step arithmetic in float32.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "diffusion/schedule.hpp"

namespace mcm::diffusion {

struct DdimOptions {
  std::string timestep_spacing = "leading";  ///< "leading", "trailing" or "linspace"
  int64_t steps_offset = 0;
  bool set_alpha_to_one = true;
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  Prediction prediction = Prediction::epsilon;
  /// Share of DDPM's posterior noise re-injected per step (diffusers' `eta`): 0 is the
  /// deterministic DDIM ODE, 1 the ancestral DDPM sampler on the same timesteps.
  double eta = 0.0;
};

struct StepResult {
  torch::Tensor prev_sample;  ///< x at the next (smaller) timestep
  torch::Tensor denoised;     ///< predicted x0 (DDIM) or the consistency output (LCM)
};

/// DDIM: deterministic at eta = 0, stochastic (fresh noise each step) at eta > 0.
class DdimSampler {
 public:
  DdimSampler(const NoiseSchedule& schedule, DdimOptions opt = {});
  /// Sets and returns the timesteps for `steps` inference steps (descending).
  const std::vector<int64_t>& set_timesteps(int64_t steps);
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  /// One step from timestep t (one of timesteps()) given the model output there. `noise`
  /// (standard normal, shaped like sample) is required when eta > 0 and ignored otherwise.
  StepResult step(const torch::Tensor& model_out, int64_t t, const torch::Tensor& sample,
                  const torch::Tensor& noise = {}) const;

 private:
  const NoiseSchedule& schedule_;
  DdimOptions opt_;
  int64_t steps_ = 0;
  std::vector<int64_t> timesteps_;
  torch::Tensor final_abar_;
};

/// Defaults follow MCM (MCM.md "Sampling the student"): timestep_scaling 4, where diffusers'
/// LCMScheduler defaults to 10; comparisons with diffusers set the scaling explicitly.
struct LcmOptions {
  int64_t original_inference_steps = 50;  ///< the distillation grid (tau_i = k(i+1) - 1)
  double timestep_scaling = 4.0;          ///< MCM's boundary-condition scaling (diffusers: 10)
  bool set_alpha_to_one = true;
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  Prediction prediction = Prediction::epsilon;
};

/// LCM multistep sampling: consistency output at each timestep, re-noised to the next one.
class LcmSampler {
 public:
  LcmSampler(const NoiseSchedule& schedule, LcmOptions opt = {});
  /// num_inference_steps evenly spaced (by index) over the distillation grid, descending.
  const std::vector<int64_t>& set_timesteps(int64_t steps);
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  /// Step `index` (0-based into timesteps()); `noise` re-noises to the next timestep and is
  /// ignored at the last step, whose prev_sample is the denoised output.
  StepResult step(const torch::Tensor& model_out, size_t index, const torch::Tensor& sample, const torch::Tensor& noise) const;

 private:
  const NoiseSchedule& schedule_;
  LcmOptions opt_;
  std::vector<int64_t> timesteps_;
  torch::Tensor final_abar_;
};

struct DpmSolverOptions {
  std::string timestep_spacing = "linspace";  ///< diffusers' default for this scheduler
  int64_t steps_offset = 0;
  Prediction prediction = Prediction::epsilon;
};

/// DPM-Solver++(2M): multistep, second order (midpoint), first order at the start and at the
/// last step (lower_order_final), final sigma zero. Stateful: call step() for index 0, 1, ...
class DpmSolverSampler {
 public:
  DpmSolverSampler(const NoiseSchedule& schedule, DpmSolverOptions opt = {});
  const std::vector<int64_t>& set_timesteps(int64_t steps);
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  /// Step `index`; must be called in order from 0 after set_timesteps (the history is reset there).
  StepResult step(const torch::Tensor& model_out, size_t index, const torch::Tensor& sample);

 private:
  const NoiseSchedule& schedule_;
  DpmSolverOptions opt_;
  std::vector<int64_t> timesteps_;
  std::vector<torch::Tensor> sigmas_;  ///< per step plus the final 0, float32 0-dim
  torch::Tensor prev_x0_;              ///< x0 prediction of the previous step
  size_t next_index_ = 0;
};

/// The DDIM solver grid of consistency distillation: tau_i = (T / n)(i + 1) - 1, i = 0..n-1.
std::vector<int64_t> ddim_solver_grid(int64_t num_train_timesteps, int64_t n);

}  // namespace mcm::diffusion
