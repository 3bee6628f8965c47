// The embedded teacher: its UNet (UNet3D or UNetMotion, models.teacher.kind) from [teacher] and the shapes of prep's latents,
// and its training loss (epsilon, v or x0 prediction with caption dropout). Include only from torch units.
#pragma once
#include <torch/torch.h>

#include "diffusion/samplers.hpp"
#include "diffusion/schedule.hpp"
#include "models/unet3d.hpp"
#include "models/unet_motion.hpp"
#include "models/video_unet.hpp"
#include "pipeline/teacher_config.hpp"
#include "train/trainer.hpp"

namespace mcm::stages {

/// UNet3D options for latents [C, T, H, W] and text embeddings of width `text_dim`.
models::Unet3DConfig teacher_unet_config(const TeacherSection& t, int64_t channels, int64_t height, int64_t text_dim);
/// The same widths, levels and heads as a UNetMotionModel (AnimateDiff's structure at this size:
/// SD1.5's 1x1-conv projections, motion modules of the same head width, 32 frame positions).
models::UnetMotionConfig teacher_unet_motion_config(const TeacherSection& t, int64_t channels, int64_t height,
                                                    int64_t text_dim);
/// A fresh embedded teacher of `kind` ("unet3d" or "unet_motion", models.teacher.kind).
models::VideoUnet make_teacher_unet(const TeacherSection& t, const std::string& kind, int64_t channels, int64_t height,
                                    int64_t text_dim);

/// The denoising loss of one micro-batch: per sample (named by its rank-independent id) a
/// timestep t ~ U{0..T-1}, noise eps, and with probability `caption_dropout` the empty caption;
/// loss = mean((unet(x_t, t, c) - target)^2) with target eps or v (`prediction`), or for x0
/// ("sample") mean(min(1 + SNR_t, sample_weight_cap) * (unet(x_t, t, c) - x0)^2) (Note [x0 teacher]
/// in teacher_model.cpp). Every draw comes from rng streams keyed by
/// (seed, "teacher", sample id), so the loss does not depend on how samples are split over ranks.
train::LossFn teacher_loss(models::VideoUnet unet, const diffusion::NoiseSchedule& schedule, torch::Tensor empty_text,
                           double caption_dropout, diffusion::Prediction prediction, double sample_weight_cap,
                           uint64_t seed, torch::Device device);

/// The teacher's noise schedule: SD/ModelScope's scaled_linear betas, rescaled to zero terminal
/// SNR when the config says so.
diffusion::ScheduleOptions teacher_schedule(const TeacherSection& t);
/// A teacher's DDIM sampler settings: SD's (leading spacing, steps_offset 1, set_alpha_to_one
/// false), or trailing spacing at zero terminal SNR (Lin et al.), with the prediction type.
diffusion::DdimOptions teacher_ddim(diffusion::Prediction prediction, bool zero_terminal_snr);
/// The same for the embedded teacher's [teacher] section.
diffusion::DdimOptions teacher_ddim(const TeacherSection& t);
/// The same as diffusers' DDIMScheduler scheduler_config.json.
nlohmann::json teacher_scheduler_config(const TeacherSection& t);

/// The teacher the later stages use, and how it was trained to be sampled.
struct TeacherSource {
  std::filesystem::path unet;             ///< diffusers unet/ folder
  std::filesystem::path motion_adapter;   ///< with an SD1.5 unet/: the MotionAdapter folder (models.teacher.motion_adapter)
  std::string checksum;                   ///< folder_checksum(unet) (+ the adapter's)
  diffusion::ScheduleOptions schedule;    ///< from scheduler/scheduler_config.json beside unet/
  diffusion::Prediction prediction = diffusion::Prediction::epsilon;
  std::string prediction_name = "epsilon";
};
/// models.teacher.path, or the embedded teacher that `mcm teacher` wrote. The schedule comes from
/// the scheduler/ folder beside unet/ (diffusers' layout: ModelScope's and ours); without one,
/// ModelScope's defaults (scaled_linear 0.00085..0.012 over 1000 steps, epsilon). `stage` names
/// the caller in errors.
TeacherSource find_teacher(const config::Config& cfg, const std::string& stage);
/// The same for a given diffusers unet/ folder (its scheduler/ beside it).
TeacherSource teacher_from_folder(const std::filesystem::path& unet, const std::string& stage);
/// The teacher's UNet (load_video_unet of its folder, with its motion adapter), in eval mode.
models::VideoUnet load_teacher_unet(const TeacherSource& t, torch::ScalarType dtype = torch::kFloat32);

}  // namespace mcm::stages
