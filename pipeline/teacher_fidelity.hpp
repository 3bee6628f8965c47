// Does the teacher generate what the caption says? Samples held-out prompts with 50-step DDIM and
// classifier-free guidance, decodes them to pixels and scores colour, shape and direction with the
// rule-based analyser (eval/caption_fidelity.hpp); the same analyser on the training clips
// themselves is reported beside it as the analyser's own accuracy on this data.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "diffusion/samplers.hpp"
#include "diffusion/schedule.hpp"
#include "dist/dist_context.hpp"
#include "models/encoders.hpp"
#include "models/video_unet.hpp"

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

/// Standard normal noise for sampler step k, one row per prompt of the batch.
using StepNoise = std::function<torch::Tensor(int64_t)>;

/// DDIM with classifier-free guidance from noise x_T: out = out_u + w (out_c - out_u) per step
/// (on the model output, eps or v, as diffusers' pipelines do). With ddim.eta > 0, step k (0-based)
/// adds step_noise(k), standard normal shaped like x.
torch::Tensor sample_ddim_cfg(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, torch::Tensor x,
                              const torch::Tensor& cond, const torch::Tensor& uncond, double guidance, int64_t steps,
                              const diffusion::DdimOptions& ddim,
                              const StepNoise& step_noise = {});

/// DPM-Solver++(2M) with classifier-free guidance from noise x_T, the guidance on the model output
/// as in sample_ddim_cfg; deterministic (no step noise).
torch::Tensor sample_dpm_cfg(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, torch::Tensor x,
                             const torch::Tensor& cond, const torch::Tensor& uncond, double guidance, int64_t steps,
                             const diffusion::DpmSolverOptions& dpm);
/// Latents [N, C, T, H, W] -> per clip [T, 3, H', W'] pixels in [-1, 1] (CPU float32).
std::vector<torch::Tensor> decode_clips(models::FrameAutoencoder& ae, const torch::Tensor& latents);
/// A decoded clip [T, 3, H, W] in [-1, 1] as uint8 RGB [T, H, W, 3] (rounded, clamped).
torch::Tensor clip_to_uint8(const torch::Tensor& clip);
/// Collective: every rank's per-clip analyses (objects with "index", "prompt", "colour", "shape",
/// "direction") gathered on every rank, sorted by index, and scored against their prompts.
/// Returns {"per_prompt": the sorted analyses, "score": FidelityScore json}.
nlohmann::json gather_fidelity(const nlohmann::json& mine, const dist::DistContext& ctx);
/// LCM multistep sampling of a consistency student (MCM.md "Sampling the student": no guidance,
/// re-noised with step_noise(k) between steps) over `steps` timesteps of lcm's distillation grid.
torch::Tensor sample_lcm(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, torch::Tensor x,
                         const torch::Tensor& cond, int64_t steps, const diffusion::LcmOptions& lcm, const StepNoise& step_noise);

/// Samples latents [N, C, T, H, W] from x_T for N prompts (cond [N, L, D], uncond [1, L, D]).
using PromptSampler = std::function<torch::Tensor(torch::Tensor x_T, const torch::Tensor& cond, const torch::Tensor& uncond,
                                                  const StepNoise& step_noise)>;

/// Collective: prompts are dealt to ranks (prompt i to rank i % world), each sampled by `sample`
/// from its own noise (stream "teacher_eval"/i, so any sampler of the same prompts starts from the
/// same x_T, whatever the world size), decoded and analysed; scores summed. Returns {"prompts",
/// "score": FidelityScore json, "per_prompt": [...]} on every rank. Each per_prompt entry holds
/// the analyser's verdicts and evidence (foreground_fraction, triangle_score, corner_score,
/// frames_used) and "pixels", the checksum of the clip as 8-bit RGB.
nlohmann::json prompt_fidelity(const PromptSampler& sample, models::FrameAutoencoder& ae, models::TextEncoder& text,
                               const std::vector<std::string>& prompts, uint64_t seed, const std::vector<int64_t>& latent_shape,
                               const dist::DistContext& ctx, torch::Device device);

/// prompt_fidelity of the teacher's guided DDIM (sample_ddim_cfg with `opt`), plus its settings.
nlohmann::json teacher_fidelity(const models::VideoUnet& unet, models::FrameAutoencoder& ae, models::TextEncoder& text,
                                const diffusion::NoiseSchedule& schedule, const std::vector<std::string>& prompts,
                                const FidelityOptions& opt, const dist::DistContext& ctx, torch::Device device);

/// How much noise the model leaves when it denoises real clips in one step: for each t, the
/// mean squared error of its x0 prediction from x_t = noised `latents` [N, C, T, H, W] (noise
/// from stream "teacher_eval"/"residual_noise"), divided by the noise variance 1 - abar_t. An
/// ideal denoiser of clean data approaches 0 at small t; 1 is no denoising. Samples keep what
/// the last steps leave, so this locates speckled or blurred samples. {"<t>": ratio, ...}.
nlohmann::json denoising_residual(const models::VideoUnet& unet, const diffusion::NoiseSchedule& schedule, const torch::Tensor& latents,
                                  const torch::Tensor& text, diffusion::Prediction prediction, uint64_t seed,
                                  const std::vector<int64_t>& timesteps, torch::Device device);

/// The first n clips of a latent shard (n capped at its size), float32 on the CPU: the training
/// data the fidelity checks and bench/cd_probe measure against. `latent_shape` [C, T, H, W] and
/// `text_shape` [L, D] are the shard's per-sample shapes (ShardInfo).
struct ShardClips {
  torch::Tensor latents;              ///< [n, C, T, H, W]
  torch::Tensor text;                 ///< [n, L, D]: the captions' embeddings
  std::vector<std::string> captions;  ///< n
};
ShardClips read_shard_clips(const std::filesystem::path& shard, const std::vector<int64_t>& latent_shape,
                            const std::vector<int64_t>& text_shape, int64_t n);

/// The analyser's accuracy on real clips: decoded latents [N, C, T, H, W] with their captions.
nlohmann::json analyser_on_data(models::FrameAutoencoder& ae, const torch::Tensor& latents,
                                const std::vector<std::string>& captions);

}  // namespace mcm::stages
