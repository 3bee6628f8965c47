// The embedded teacher: its UNet3D configuration from [teacher] and the shapes of prep's latents,
// and its training loss (epsilon prediction with caption dropout). Include only from torch units.
#pragma once
#include <torch/torch.h>

#include "diffusion/schedule.hpp"
#include "models/unet3d.hpp"
#include "pipeline/teacher_config.hpp"
#include "train/trainer.hpp"

namespace mcm::stages {

/// UNet3D options for latents [C, T, H, W] and text embeddings of width `text_dim`.
models::Unet3DConfig teacher_unet_config(const TeacherSection& t, int64_t channels, int64_t height, int64_t text_dim);

/// The denoising loss of one micro-batch: per sample (named by its rank-independent id) a
/// timestep t ~ U{0..T-1}, noise eps, and with probability `caption_dropout` the empty caption;
/// loss = mean((unet(x_t, t, c) - eps)^2). Every draw comes from rng streams keyed by
/// (seed, "teacher", sample id), so the loss does not depend on how samples are split over ranks.
train::LossFn teacher_loss(models::Unet3D unet, const diffusion::NoiseSchedule& schedule, torch::Tensor empty_text,
                           double caption_dropout, uint64_t seed, torch::Device device);

}  // namespace mcm::stages
