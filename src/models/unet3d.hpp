// UNet3DConditionModel as diffusers defines it for ModelScopeT2V: per-frame 2D ResNets and
// cross-attention transformers interleaved with temporal convolutions and temporal attention,
// `transformer_in` after conv_in, sinusoidal time embedding. Parameter names are diffusers'
// state-dict keys, so a diffusers `unet/` folder loads with load_strict().
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/layers.hpp"
#include "models/video_unet.hpp"

namespace mcm::models {

/// The options of a diffusers UNet3DConditionModel config.json (defaults are diffusers').
struct Unet3DConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<std::string> down_block_types{"CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                            "DownBlock3D"};
  std::vector<std::string> up_block_types{"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D",
                                          "CrossAttnUpBlock3D"};
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  int64_t layers_per_block = 2;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  int64_t cross_attention_dim = 1024;
  /// The per-head width of every attention (diffusers passes it on as "num_attention_heads" and
  /// the blocks use out_channels / it heads of it). One integer: transformer_in is built from it.
  int64_t attention_head_dim = 64;
  int64_t time_cond_proj_dim = 0;  ///< 0: none
  int64_t sample_size = 32;

  /// Reads and validates `config.json` (unknown block types, act_fn other than silu, a set
  /// num_attention_heads, or inconsistent lengths are ConfigErrors naming the file and key).
  static Unet3DConfig from_json(const nlohmann::json& doc, const std::filesystem::path& file);
  nlohmann::json to_json() const;
};

class Unet3DImpl : public VideoUnetImpl {
 public:
  explicit Unet3DImpl(const Unet3DConfig& cfg);
  /// sample [B, C, F, H, W], timesteps [B] (or one value), context [B, L, cross_attention_dim],
  /// optional timestep_cond [B, time_cond_proj_dim] -> [B, out_channels, F, H, W].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps, const torch::Tensor& context,
                        const std::optional<torch::Tensor>& timestep_cond = std::nullopt) override;
  /// The encoder half's features, for a discriminator on the frozen network (LADD): the output
  /// of every down block before its downsampler, then the mid block's output, each [B * F, C, h, w]
  /// (frame-major within a sample). Same arguments as forward (no timestep_cond); the up half is not run.
  std::vector<torch::Tensor> encoder_features(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                              const torch::Tensor& context) override;
  const Unet3DConfig& config() const { return cfg_; }
  VideoUnetShape shape() const override {
    return {cfg_.in_channels, cfg_.cross_attention_dim, cfg_.time_cond_proj_dim, cfg_.block_out_channels};
  }
  nlohmann::json config_json() const override { return cfg_.to_json(); }

 private:
  struct Block;
  // conv_in .. mid block; fills `skips` (for the up half) and `features` when given.
  torch::Tensor encode(const torch::Tensor& sample, const torch::Tensor& emb, const torch::Tensor& ctx, int64_t F,
                       std::vector<torch::Tensor>* skips, std::vector<torch::Tensor>* features);
  Unet3DConfig cfg_;
  layers::Conv2d conv_in{nullptr}, conv_out{nullptr};
  layers::TimestepEmbedding time_embedding{nullptr};
  layers::TransformerTemporal transformer_in{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, up_blocks{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  std::vector<std::shared_ptr<Block>> down_, up_;
  std::shared_ptr<Block> mid_;
};
TORCH_MODULE(Unet3D);

/// Builds the UNet from a diffusers `unet/` folder: config.json decides the options, the weights
/// load strictly and convert to `dtype`. Returned in eval mode, as diffusers' from_pretrained
/// (trainers call train()).
Unet3D load_unet3d(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32);

/// Writes `folder/config.json` and `folder/diffusion_pytorch_model.safetensors` (diffusers layout).
/// A model with LoRA adapters is written as the plain UNet with the adapters merged: it must be
/// merged first (ConfigError otherwise: an unmerged adapter would silently vanish in diffusers).
void save_unet3d(Unet3D& unet, const std::filesystem::path& folder,
                 std::optional<torch::ScalarType> dtype = std::nullopt);

}  // namespace mcm::models
