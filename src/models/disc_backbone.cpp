// Discriminator backbones (see disc_backbone.hpp).
#include "models/disc_backbone.hpp"

#include "core/error.hpp"

namespace mcm::models {

TeacherBackbone::TeacherBackbone(VideoUnet teacher, int64_t timestep, DiffAugmentOptions augment)
    : teacher_(std::move(teacher)), timestep_(timestep), aug_(augment) {
  aug_.color = false;
  for (auto& p : teacher_->parameters())
    require<ConfigError>(!p.requires_grad(), "teacher discriminator backbone: the teacher must be frozen");
}

std::vector<int64_t> TeacherBackbone::channels() const {
  const auto& c = teacher_->shape().block_out_channels;
  std::vector<int64_t> out(c.begin(), c.end());
  out.push_back(c.back());  // the mid block
  return out;
}

std::vector<torch::Tensor> TeacherBackbone::features(const torch::Tensor& frames, const torch::Tensor& context,
                                                     const DiffAugmentDraws& aug) {
  require<DataError>(frames.dim() == 4, "teacher discriminator backbone: expected latent frames [N, C, h, w], got ",
                     frames.sizes());
  auto x = diff_augment(frames, aug, aug_).unsqueeze(2);  // [N, C, 1, h, w]: one-frame videos
  auto t = torch::full({1}, timestep_, torch::TensorOptions().dtype(torch::kInt64).device(frames.device()));
  auto feats = teacher_->encoder_features(x, t, context);
  for (auto& f : feats) f = f.flatten(2);
  return feats;
}

Dinov2Backbone::Dinov2Backbone(FrameAutoencoder& autoencoder, Dinov2 dino, int64_t image_size, DiffAugmentOptions augment)
    : autoencoder_(autoencoder),
      dino_(std::move(dino)),
      image_size_(image_size),
      aug_(augment),
      layers_(dinov2_feature_layers(dino_->config().num_hidden_layers)) {
  require<ConfigError>(image_size_ > 0 && image_size_ % dino_->config().patch_size == 0, "DINOv2 backbone: image size ",
                       image_size_, " must be a positive multiple of the patch size ", dino_->config().patch_size);
  require<ConfigError>(dino_->config().num_channels == 3, "DINOv2 backbone: the model takes ", dino_->config().num_channels,
                       " channels; decoded frames have 3");
  for (auto& p : dino_->parameters()) p.set_requires_grad(false);
  dino_->eval();
}

std::vector<int64_t> Dinov2Backbone::channels() const {
  return std::vector<int64_t>(layers_.size(), dino_->config().hidden_size);
}

std::vector<torch::Tensor> Dinov2Backbone::features(const torch::Tensor& frames, const torch::Tensor&,
                                                    const DiffAugmentDraws& aug) {
  require<DataError>(frames.dim() == 4, "DINOv2 backbone: expected latent frames [N, C, h, w], got ", frames.sizes());
  auto px = diff_augment(autoencoder_.decode_differentiable(frames), aug, aug_);
  px = torch::nn::functional::interpolate(px, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{image_size_, image_size_})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  auto opts = px.options();
  auto mean = torch::tensor({0.485, 0.456, 0.406}, opts).view({1, 3, 1, 1});
  auto std = torch::tensor({0.229, 0.224, 0.225}, opts).view({1, 3, 1, 1});
  px = ((px + 1.0) * 0.5 - mean) / std;
  auto feats = dino_->forward(px, layers_);
  for (auto& f : feats) f = f.slice(1, 1).transpose(1, 2);  // drop CLS: [N, hidden, patches]
  return feats;
}

}  // namespace mcm::models
