// DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020)
// as MCM's frame discriminator uses it (MCM.md "Frame discriminator": colour, translation 1/8,
// cutout 0.2): differentiable, so the generator's gradient flows through the augmented fake
// frames. Every random parameter is explicit (DiffAugmentDraws), so a test can feed the
// reference's draws and a run can key them by sample. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "core/rng.hpp"

namespace mcm::models {

/// Per-image random parameters of one DiffAugment pass over [N, C, H, W] images.
struct DiffAugmentDraws {
  torch::Tensor brightness;  ///< [N] uniform [0, 1): x + (b - 0.5)
  torch::Tensor saturation;  ///< [N] uniform [0, 1): (x - mean_c x) * 2s + mean_c x
  torch::Tensor contrast;    ///< [N] uniform [0, 1): (x - mean_chw x) * (c + 0.5) + mean_chw x
  torch::Tensor shift_h;     ///< [N] int64 in [-r, r], r = int(H * translation + 0.5): out row i = in row i + shift
  torch::Tensor shift_w;     ///< [N] int64, likewise over W
  torch::Tensor cutout_h;    ///< [N] int64 in [0, H + 1 - s % 2), s = int(H * cutout + 0.5): the cut square's centre row
  torch::Tensor cutout_w;    ///< [N] int64, likewise over W
};

struct DiffAugmentOptions {
  double translation = 0.125;  ///< MCM: 1/8 of the side
  double cutout = 0.2;         ///< MCM: 0.2 of the side
  /// Brightness, saturation and contrast: pixel operations, so off for latent frames (a latent
  /// channel is not a colour; the teacher backbone augments latents by translation and cutout only).
  bool color = true;
};

/// Draws for images of h x w, one rng stream per image (the run keys them by sample, frame and
/// purpose, so they do not depend on the world size): brightness, saturation, contrast, shift_h,
/// shift_w, cutout_h, cutout_w in that order, ranges as above. CPU tensors.
DiffAugmentDraws draw_diff_augment(const std::vector<rng::Key>& keys, int64_t h, int64_t w, const DiffAugmentOptions& o);

/// colour (brightness, saturation, contrast), translation (vacated pixels are zero), cutout (an
/// s x s square, clipped at the border, set to zero), in that order: the reference's
/// "color,translation,cutout" policy. x [N, C, H, W], any float dtype; differentiable in x.
torch::Tensor diff_augment(const torch::Tensor& x, const DiffAugmentDraws& d, const DiffAugmentOptions& o);

}  // namespace mcm::models
