// Does the teacher generate what the caption says? Samples held-out prompts with 50-step DDIM and
// classifier-free guidance, decodes them to pixels and scores colour, shape and direction with the
// rule-based analyser (eval/caption_fidelity.hpp); the same analyser on the training clips
// themselves is reported beside it as the analyser's own accuracy on this data.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "diffusion/samplers.hpp"
#include "diffusion/schedule.hpp"
#include "dist/dist_context.hpp"
#include "models/encoders.hpp"
#include "models/unet3d.hpp"

namespace mcm::stages {

struct FidelityOptions {
  int64_t prompts = 32;     ///< held-out prompts (captions of the synthetic world not in the training set)
  int64_t steps = 50;       ///< DDIM steps
  double guidance = 5.0;    ///< classifier-free guidance scale (ddim.eta sets the sampler's noise)
  uint64_t seed = 0;        ///< run seed (prompts and initial noise come from it)
  diffusion::DdimOptions ddim;  ///< the teacher's sampler settings (prediction type, spacing)
  std::vector<int64_t> latent_shape;  ///< [C, T, H, W]
};

/// Held-out prompts: captions of scenes drawn from the synthetic world (stream "teacher_eval"),
/// skipping any caption in `training_captions`.
std::vector<std::string> held_out_prompts(int64_t n, uint64_t seed, const std::set<std::string>& training_captions);

/// DDIM with classifier-free guidance from noise x_T: out = out_u + w (out_c - out_u) per step
/// (on the model output, eps or v, as diffusers' pipelines do). With ddim.eta > 0, step k (0-based)
/// adds step_noise(k), standard normal shaped like x.
torch::Tensor sample_ddim_cfg(models::Unet3D& unet, const diffusion::NoiseSchedule& schedule, torch::Tensor x,
                              const torch::Tensor& cond, const torch::Tensor& uncond, double guidance, int64_t steps,
                              const diffusion::DdimOptions& ddim,
                              const std::function<torch::Tensor(int64_t)>& step_noise = {});

/// Collective: prompts are dealt to ranks (prompt i to rank i % world), scores summed. Returns
/// {"prompts", "samples": FidelityScore json, "per_prompt": [...]} on every rank.
nlohmann::json teacher_fidelity(models::Unet3D& unet, models::FrameAutoencoder& ae, models::TextEncoder& text,
                                const diffusion::NoiseSchedule& schedule, const std::vector<std::string>& prompts,
                                const FidelityOptions& opt, const dist::DistContext& ctx, torch::Device device);

/// How much noise the model leaves when it denoises real clips in one step: for each t, the
/// mean squared error of its x0 prediction from x_t = noised `latents` [N, C, T, H, W] (noise
/// from stream "teacher_eval"/"residual_noise"), divided by the noise variance 1 - abar_t. An
/// ideal denoiser of clean data approaches 0 at small t; 1 is no denoising. Samples keep what
/// the last steps leave, so this locates speckled or blurred samples. {"<t>": ratio, ...}.
nlohmann::json denoising_residual(models::Unet3D& unet, const diffusion::NoiseSchedule& schedule, const torch::Tensor& latents,
                                  const torch::Tensor& text, diffusion::Prediction prediction, uint64_t seed,
                                  const std::vector<int64_t>& timesteps, torch::Device device);

/// The analyser's accuracy on real clips: decoded latents [N, C, T, H, W] with their captions.
nlohmann::json analyser_on_data(models::FrameAutoencoder& ae, const torch::Tensor& latents,
                                const std::vector<std::string>& captions);

}  // namespace mcm::stages
