// One micro-batch of MCM's consistency distillation (MCM.md "Consistency distillation",
// "Motion representation M", "Mixed trajectory distillation"), with every random draw explicit
// so a test can feed the reference's draws. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "diffusion/schedule.hpp"
#include "models/motion_head.hpp"
#include "models/unet3d.hpp"
#include "pipeline/distill_config.hpp"

namespace mcm::stages {

/// Every random draw of one micro-batch.
struct CdDraws {
  torch::Tensor index;        ///< [B] int64: solver grid index i in [0, solver_steps)
  torch::Tensor w;            ///< [B] float32: guidance
  torch::Tensor noise;        ///< [B, C, T, H, W]: eps of x_t
  torch::Tensor mixed;        ///< [B] bool: x0 is the student's own one-step sample from mixed_noise
  torch::Tensor mixed_noise;  ///< [B, C, T, H, W]: z of those samples (other rows unused)
};

/// The draws of samples `sample_ids` (the loader's rank-independent ids): per sample, streams
/// (seed, "distill", id, purpose) for "solver_index", "guidance", "noise", "mixed" and
/// "mixed_noise", so they do not depend on the world size or the micro-batch split.
CdDraws draw_cd(const std::vector<int64_t>& sample_ids, const DistillSection& d, uint64_t seed,
                at::IntArrayRef latent_shape, torch::Device device);

struct CdOptions {
  diffusion::Prediction prediction = diffusion::Prediction::epsilon;  ///< the teacher's (and student's) output
  int64_t solver_steps = 50;
  double timestep_scaling = 4.0;
  double huber_c = 0.001;
};

struct CdModels {
  models::Unet3D student{nullptr};  ///< the teacher's weights plus LoRA: trains
  models::Unet3D teacher{nullptr};  ///< frozen
  models::MotionHead head{nullptr};         ///< `learn`: trains with the student
  models::MotionHead head_target{nullptr};  ///< `learn`: the head's EMA copy, for the target
};

struct CdOutput {
  torch::Tensor loss;  ///< L_CD, float32 scalar, with grad into the LoRA and the motion head
  torch::Tensor pred;  ///< f_theta(x_t, t, c) with grad: the student's clean estimate (the discriminator's fake)
};

/// L_CD of one micro-batch: x0 (real latents, or where draws.mixed the student's one-step sample
/// from pure noise z, no grad); t = tau_i, s = max(t - k, 0); x_t = sqrt(abar_t) x0 +
/// sqrt(1 - abar_t) eps (eps itself at t = T - 1); pred = c_skip(t) x_t + c_out(t) x0_theta(x_t, t, c);
/// the teacher's conditional and unconditional passes, x0 and eps each guided as c + w (c - u), one
/// DDIM step t -> s; target = c_skip(s) x_s + c_out(s) x0_theta(x_s, s, c) under stop-grad (x_s at
/// s = 0, where c_skip = 1 and c_out = 0); loss = mean(sqrt((M(pred) - M'(target))^2 + c^2) - c)
/// with M' the head's EMA copy for `learn` and M itself otherwise. `text` [B, L, D], `uncond`
/// [1, L, D] (the empty prompt).
CdOutput consistency_loss(CdModels& m, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                          models::MotionRepresentation& motion, const torch::Tensor& x0_real, const torch::Tensor& text,
                          const torch::Tensor& uncond, const CdDraws& draws);

/// target = decay * target + (1 - decay) * online, parameter by parameter (same names).
void ema_update(torch::nn::Module& target, torch::nn::Module& online, double decay);

}  // namespace mcm::stages
