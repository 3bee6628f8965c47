// The video UNet the pipeline trains, distils and samples, whichever the teacher is:
// UNet3DConditionModel (ModelScopeT2V, models/unet3d.hpp) or UNetMotionModel (AnimateDiff,
// models/unet_motion.hpp). Stages hold a VideoUnet and never name the class; the folder's
// config.json (`_class_name`) decides which is built.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mcm::models {

/// What callers check a UNet against (latents, text, w-conditioning) and size features by.
struct VideoUnetShape {
  int64_t in_channels = 4;
  int64_t cross_attention_dim = 0;
  int64_t time_cond_proj_dim = 0;
  std::vector<int64_t> block_out_channels;
};

class VideoUnetImpl : public torch::nn::Module {
 public:
  /// sample [B, C, F, H, W], timesteps [B] (or one), context [B, L, D] (one per video), optional
  /// timestep_cond [B, time_cond_proj_dim] -> [B, out_channels, F, H, W].
  virtual torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps, const torch::Tensor& context,
                                const std::optional<torch::Tensor>& timestep_cond = std::nullopt) = 0;
  /// The encoder half's features for a discriminator on the frozen network (LADD): every down
  /// block's output before its downsampler, then the mid block's, each [B * F, C, h, w].
  virtual std::vector<torch::Tensor> encoder_features(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                      const torch::Tensor& context) = 0;
  virtual VideoUnetShape shape() const = 0;
  /// The diffusers config.json of this model.
  virtual nlohmann::json config_json() const = 0;
};
using VideoUnet = std::shared_ptr<VideoUnetImpl>;

/// A fresh UNet of the class `config` (a config.json, read from `config_file`) names:
/// UNet3DConditionModel or UNetMotionModel (ConfigError for another class). With `adapter` (a
/// MotionAdapter config.json), `config` is an SD1.5-style UNet2DConditionModel and the two make a
/// UNetMotionModel (from_unet2d). Built inside layers::MetaConstruction it allocates no weights.
VideoUnet build_video_unet(const nlohmann::json& config, const std::filesystem::path& config_file,
                           const nlohmann::json* adapter = nullptr, const std::filesystem::path& adapter_file = {});
/// A diffusers folder: UNet3DConditionModel or UNetMotionModel by config.json's _class_name
/// (ConfigError for another class), strictly loaded, converted to `dtype`, in eval mode. With
/// `motion_adapter`, `folder` is an SD1.5-style UNet2DConditionModel and the two make a
/// UNetMotionModel (from_unet2d).
VideoUnet load_video_unet(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32,
                          const std::filesystem::path& motion_adapter = {});
/// Writes `folder/config.json` and `folder/diffusion_pytorch_model.safetensors` (a folder diffusers
/// loads). A model with unmerged LoRA adapters is refused: they would silently vanish.
void save_video_unet(VideoUnetImpl& unet, const std::filesystem::path& folder,
                     std::optional<torch::ScalarType> dtype = std::nullopt);

}  // namespace mcm::models
