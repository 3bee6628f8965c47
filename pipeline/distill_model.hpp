// One micro-batch of MCM's consistency distillation (MCM.md "Consistency distillation",
// "Motion representation M", "Mixed trajectory distillation"), with every random draw explicit
// so a test can feed the reference's draws. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <limits>
#include <vector>

#include "diffusion/schedule.hpp"
#include "models/disc_backbone.hpp"
#include "models/frame_discriminator.hpp"
#include "models/motion_head.hpp"
#include "models/video_unet.hpp"
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
  int64_t guidance_t_min = 0;  ///< the target is guided where guidance_t_min <= t <= guidance_t_max (DistillSection)
  int64_t guidance_t_max = std::numeric_limits<int64_t>::max();
};

/// The step's options from [distill] and the teacher's output type: what the stage trains with, and
/// what bench/cd_probe measures.
CdOptions cd_options(const DistillSection& d, diffusion::Prediction prediction);

/// The consistency function f(x, t) = c_skip(t) x + c_out(t) x0_hat(unet(x, t, c)) with the
/// boundary scalings at o.timestep_scaling; float32 (float64 when x is). t: [B] timesteps.
torch::Tensor consistency(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                          const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& text);

/// The teacher's guided DDIM step t -> s, distill's target solver: its conditional and unconditional
/// passes at x_t, x0 and eps each guided as c + w (c - u) with w [B] set to 0 where t is outside
/// [o.guidance_t_min, o.guidance_t_max], then ddim_solver_step to s. `text`, `uncond`: [B, L, D].
/// Float32 (float64 when x_t is); call under NoGradGuard.
struct GuidedStep {
  torch::Tensor x0_c, x0_u;  ///< the two passes' clean estimates
  torch::Tensor x0_g;        ///< the guided one
  torch::Tensor x_s;         ///< the solver's point at s
};
GuidedStep guided_step(const models::VideoUnet& teacher, const diffusion::NoiseSchedule& schedule, const CdOptions& o,
                       const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& s, const torch::Tensor& text,
                       const torch::Tensor& uncond, const torch::Tensor& w);

struct CdModels {
  models::VideoUnet student;  ///< the teacher's weights plus LoRA: trains
  models::VideoUnet teacher;  ///< frozen
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

/// Every random draw of the frame discriminator for one micro-batch of B clips, k frames each;
/// frame rows are sample-major (row b * k + j is frame j of clip b).
struct AdvDraws {
  torch::Tensor g_frames;     ///< [B, k] int64: frames of pred in the generator pass
  torch::Tensor d_frames;     ///< [B, k]: fresh frames of pred.detach() in the discriminator pass
  torch::Tensor real_frames;  ///< [B, k]: frames of the real clip (disc_real = "clip")
  models::DiffAugmentDraws g_aug, d_fake_aug, d_real_aug;  ///< B * k images each
  torch::Tensor gp_alpha;     ///< [B * k] float32 uniform [0, 1): the penalty's interpolation weights
};

/// The draws of samples `sample_ids`: streams (seed, "distill", id, purpose) with purposes
/// "g_frames", "d_frames", "real_frames" (k frames drawn with replacement from T each),
/// "gp_alpha", and per frame j "g_aug/j", "d_fake_aug/j", "d_real_aug/j". CPU tensors.
AdvDraws draw_adv(const std::vector<int64_t>& sample_ids, int64_t k, int64_t frames, int64_t height, int64_t width,
                  const models::DiffAugmentOptions& aug, uint64_t seed);

/// Frames idx [B, k] of x [B, C, T, H, W] -> [B * k, C, H, W] (sample-major).
torch::Tensor pick_frames(const torch::Tensor& x, const torch::Tensor& idx);

/// The discriminator's conditioning vector of a caption: the mean of its text embedding over the
/// tokens, [N, L, D] -> [N, D] (the prep shards hold the encoder's token states, not a pooled vector).
torch::Tensor pooled_text(const torch::Tensor& text);

struct Adversary {
  models::DiscBackbone* backbone = nullptr;     ///< frozen
  models::FrameDiscriminator disc{nullptr};     ///< trains with its own optimizer
};

/// The generator's adversarial loss: -mean D(features(aug(frames g_frames of pred)), video caption).
/// Differentiable into pred (the discriminator's parameters are frozen by the trainer meanwhile).
torch::Tensor generator_adv_loss(Adversary& a, const torch::Tensor& pred, const torch::Tensor& text, const AdvDraws& d);

struct DiscTerms {
  torch::Tensor hinge;  ///< mean relu(1 - D(real)) + mean relu(1 + D(fake)), with grad into D
  torch::Tensor gp;     ///< the gradient penalty, with grad into D (unweighted)
  double real_logit = 0, fake_logit = 0;  ///< mean D(real), mean D(fake): a collapsed D shows here
};

/// The discriminator's losses: fake = frames d_frames of pred (detached) with the video caption;
/// real = `real_frames` [B * k, C, H, W] with their captions `real_text` [B * k, L, D] (the clip's
/// own frames and caption, or images with theirs); the penalty interpolates real and fake features
/// row by row and conditions on the fake's caption. Backbone features are computed without grad.
DiscTerms discriminator_losses(Adversary& a, const torch::Tensor& pred, const torch::Tensor& text,
                               const torch::Tensor& real_frames, const torch::Tensor& real_text, const AdvDraws& d);

/// target = decay * target + (1 - decay) * online, parameter by parameter (same names).
void ema_update(torch::nn::Module& target, torch::nn::Module& online, double decay);

}  // namespace mcm::stages
