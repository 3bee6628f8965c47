// The frozen feature networks the frame discriminator's heads judge (MCM.md "Frame
// discriminator"; the choice is [distill] disc_backbone). A backbone takes latent frames (the
// student's prediction, or real latents) and gives per-level token features; gradients flow back
// to the frames (the generator pass), never into the backbone. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "models/diff_augment.hpp"
#include "models/dinov2.hpp"
#include "models/encoders.hpp"
#include "models/video_unet.hpp"

namespace mcm::models {

class DiscBackbone {
 public:
  virtual ~DiscBackbone() = default;
  /// Feature width of each level, in order.
  virtual std::vector<int64_t> channels() const = 0;
  /// The augmentation this backbone's input takes (colour only for pixel backbones).
  virtual DiffAugmentOptions augment() const = 0;
  /// frames [N, C, h, w] (scaled latents), context [N, L, D] (the captions' text embeddings), the
  /// augmentation draws of the N frames -> per level [N, C_l, L_l] tokens. Differentiable in frames.
  virtual std::vector<torch::Tensor> features(const torch::Tensor& frames, const torch::Tensor& context,
                                              const DiffAugmentDraws& aug) = 0;
};

/// "teacher": the frozen teacher's own encoder on latent frames (the latent discriminator of LADD,
/// Sauer et al. 2024): each frame runs as a one-frame video at timestep `timestep` with its
/// caption's embedding as cross-attention context; the features are Unet3D::encoder_features
/// (every down block before its downsampler, then the mid block), flattened to tokens. Latents
/// are augmented by translation and cutout (no colour).
class TeacherBackbone : public DiscBackbone {
 public:
  TeacherBackbone(VideoUnet teacher, int64_t timestep, DiffAugmentOptions augment);
  std::vector<int64_t> channels() const override;
  DiffAugmentOptions augment() const override { return aug_; }
  std::vector<torch::Tensor> features(const torch::Tensor& frames, const torch::Tensor& context,
                                      const DiffAugmentDraws& aug) override;

 private:
  VideoUnet teacher_;
  int64_t timestep_;
  DiffAugmentOptions aug_;
};

/// "dinov2": MCM's backbone. Latent frames are decoded by the autoencoder with gradient, augmented
/// (DiffAugment colour, translation, cutout on pixels in [-1, 1]), resized to `image_size`
/// (bilinear, align_corners = false), normalised with ImageNet's mean and std (from [0, 1]), run
/// through the frozen DINOv2; the features are dinov2_feature_layers (MCM: blocks 2, 5, 8, 11),
/// final LayerNorm applied, CLS dropped, as [N, hidden, patches]. The caption does not enter the
/// features (only the heads' projection).
class Dinov2Backbone : public DiscBackbone {
 public:
  Dinov2Backbone(FrameAutoencoder& autoencoder, Dinov2 dino, int64_t image_size, DiffAugmentOptions augment);
  std::vector<int64_t> channels() const override;
  DiffAugmentOptions augment() const override { return aug_; }
  std::vector<torch::Tensor> features(const torch::Tensor& frames, const torch::Tensor& context,
                                      const DiffAugmentDraws& aug) override;

 private:
  FrameAutoencoder& autoencoder_;
  Dinov2 dino_;
  int64_t image_size_;
  DiffAugmentOptions aug_;
  std::vector<int64_t> layers_;
};

}  // namespace mcm::models
