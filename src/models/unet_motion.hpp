// UNetMotionModel as diffusers defines it for AnimateDiff: Stable Diffusion 1.5's 2D UNet (per-frame
// ResNets and cross-attention transformers with 1x1-conv projections) with a motion module after
// every ResNet/transformer pair (MotionAdapter: self-attention over the frames with sinusoidal
// frame positions), no temporal convolutions. Parameter names are diffusers' state-dict keys: a
// saved UNetMotionModel folder loads with load_unet_motion(folder), an SD1.5 `unet/` folder plus a
// `motion_adapter/` folder with load_unet_motion(unet, adapter), as UNetMotionModel.from_unet2d does
// (the two state dicts are disjoint and need no renaming).
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/layers.hpp"
#include "models/video_unet.hpp"

namespace mcm::models {

/// The options of a diffusers UNetMotionModel config.json (defaults are diffusers'). Per-block
/// lists (num_attention_heads, transformer layers...) are refused: SD1.5 and the released adapters
/// use one value for every block.
struct UnetMotionConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<std::string> down_block_types{"CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion",
                                            "CrossAttnDownBlockMotion", "DownBlockMotion"};
  std::vector<std::string> up_block_types{"UpBlockMotion", "CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion",
                                          "CrossAttnUpBlockMotion"};
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  int64_t layers_per_block = 2;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  int64_t cross_attention_dim = 1280;
  int64_t num_attention_heads = 8;          ///< heads of the spatial transformers (width / heads each)
  bool use_linear_projection = false;       ///< SD1.5: 1x1-conv proj_in/proj_out
  int64_t transformer_layers_per_block = 1;
  int64_t temporal_transformer_layers_per_block = 1;
  int64_t temporal_transformer_layers_per_mid_block = 1;
  int64_t motion_num_attention_heads = 8;   ///< heads of the motion modules
  int64_t motion_max_seq_length = 32;       ///< frames the positional table covers
  bool use_motion_mid_block = true;
  int64_t time_cond_proj_dim = 0;           ///< 0: none (an LCM-style w-embedding when > 0)
  int64_t sample_size = 64;

  /// A UNetMotionModel config.json; ConfigErrors name the file and key.
  static UnetMotionConfig from_json(const nlohmann::json& doc, const std::filesystem::path& file);
  /// What UNetMotionModel.from_unet2d(unet, adapter) builds: the UNet2DConditionModel config with
  /// the adapter's motion settings (SD1.5's attention_head_dim is its head count; the motion modules
  /// use the UNet's norm_num_groups, as diffusers does). Mismatched block counts or layers per
  /// block are ConfigErrors naming both files.
  static UnetMotionConfig from_unet2d(const nlohmann::json& unet, const std::filesystem::path& unet_file,
                                      const nlohmann::json& adapter, const std::filesystem::path& adapter_file);
  nlohmann::json to_json() const;
  void validate(const std::filesystem::path& file) const;
  /// Stable Diffusion 1.5's UNet (runwayml unet/config.json) with motion adapter v1-5-2 (its
  /// config.json), as published: the structure AnimateDiff's folders build.
  static UnetMotionConfig sd15_v152();
};

class UnetMotionImpl : public VideoUnetImpl {
 public:
  explicit UnetMotionImpl(const UnetMotionConfig& cfg);
  /// sample [B, C, F, H, W], timesteps [B] (or one value), context [B, L, cross_attention_dim] (one
  /// per video; repeated per frame here, as AnimateDiffPipeline does before calling diffusers), optional
  /// timestep_cond [B, time_cond_proj_dim] -> [B, out_channels, F, H, W]. F <= motion_max_seq_length.
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps, const torch::Tensor& context,
                        const std::optional<torch::Tensor>& timestep_cond = std::nullopt) override;
  /// Every down block's output before its downsampler, then the mid block's, each [B * F, C, h, w].
  std::vector<torch::Tensor> encoder_features(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                              const torch::Tensor& context) override;
  const UnetMotionConfig& config() const { return cfg_; }
  VideoUnetShape shape() const override {
    return {cfg_.in_channels, cfg_.cross_attention_dim, cfg_.time_cond_proj_dim, cfg_.block_out_channels};
  }
  nlohmann::json config_json() const override { return cfg_.to_json(); }

 private:
  struct Block;
  // Checks the inputs; the time embedding per frame and the context per frame.
  std::pair<torch::Tensor, torch::Tensor> embed(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                const torch::Tensor& context, const std::optional<torch::Tensor>& cond);
  // conv_in .. mid block; fills `skips` (for the up half) and `features` when given.
  torch::Tensor encode(const torch::Tensor& sample, const torch::Tensor& emb, const torch::Tensor& ctx, int64_t F,
                       std::vector<torch::Tensor>* skips, std::vector<torch::Tensor>* features);
  UnetMotionConfig cfg_;
  layers::Conv2d conv_in{nullptr}, conv_out{nullptr};
  layers::TimestepEmbedding time_embedding{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, up_blocks{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  std::vector<std::shared_ptr<Block>> down_, up_;
  std::shared_ptr<Block> mid_;
};
TORCH_MODULE(UnetMotion);

/// A saved UNetMotionModel folder (config.json + weights), strictly loaded, converted to `dtype`, in eval mode.
UnetMotion load_unet_motion(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32);
/// An SD1.5-style `unet/` folder (UNet2DConditionModel) plus a `motion_adapter/` folder (MotionAdapter),
/// as UNetMotionModel.from_unet2d: every key of both files, strictly, nothing left over.
UnetMotion load_unet_motion(const std::filesystem::path& unet_folder, const std::filesystem::path& adapter_folder,
                            torch::ScalarType dtype = torch::kFloat32);
/// Writes `folder/config.json` and `folder/diffusion_pytorch_model.safetensors` (a UNetMotionModel
/// folder diffusers loads); unmerged LoRA adapters are refused, as for save_unet3d.
void save_unet_motion(UnetMotion& unet, const std::filesystem::path& folder,
                      std::optional<torch::ScalarType> dtype = std::nullopt);

}  // namespace mcm::models
