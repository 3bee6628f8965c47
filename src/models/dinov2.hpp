// DINOv2 (Oquab et al. 2023) as transformers' Dinov2Model defines it: patch embedding, CLS token,
// position embeddings interpolated bicubically to the input's patch grid, pre-norm ViT layers with
// layer scale, a final LayerNorm. Parameter names are transformers' state-dict keys, so a folder
// written by Dinov2Model.save_pretrained (facebook/dinov2-small: ViT-S/14) loads strictly. MCM's
// frame discriminator reads the features of four blocks. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

namespace mcm::models {

/// The options of a transformers Dinov2Config (defaults are transformers').
struct Dinov2Config {
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  double mlp_ratio = 4.0;
  double layer_norm_eps = 1e-6;
  int64_t image_size = 224;  ///< of the position table: (image_size / patch_size)^2 positions + CLS
  int64_t patch_size = 14;
  int64_t num_channels = 3;
  bool qkv_bias = true;
  double layerscale_value = 1.0;
  bool use_mask_token = true;
  /// Reads config.json; hidden_act other than gelu, SwiGLU feed-forwards (ViT-g) and inconsistent
  /// sizes are ConfigErrors naming the file and key.
  static Dinov2Config from_json(const nlohmann::json& doc, const std::filesystem::path& file);
};

class Dinov2Impl : public torch::nn::Module {
 public:
  explicit Dinov2Impl(const Dinov2Config& cfg);
  /// pixels [N, C, H, W] (normalised as the model expects; H and W multiples of patch_size) ->
  /// for each 0-based layer index in `layers` (ascending), the final LayerNorm of that layer's
  /// output, [N, 1 + patches, hidden] (CLS first). The last layer's entry is last_hidden_state.
  std::vector<torch::Tensor> forward(const torch::Tensor& pixels, const std::vector<int64_t>& layers);
  const Dinov2Config& config() const { return cfg_; }

 private:
  struct Layer;
  torch::Tensor position_embeddings_for(int64_t grid_h, int64_t grid_w) const;
  Dinov2Config cfg_;
  torch::Tensor cls_token, mask_token, position_embeddings;
  torch::nn::Conv2d projection{nullptr};
  std::vector<std::shared_ptr<Layer>> layers_;
  torch::nn::LayerNorm layernorm{nullptr};
};
TORCH_MODULE(Dinov2);

/// Builds the model from a transformers folder (config.json, model.safetensors), strictly, in
/// `dtype`, frozen (no parameter requires grad) and in eval mode.
Dinov2 load_dinov2(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32);

/// MCM's four feature blocks, generalised to any depth: layers round(n * j / 4) - 1 for j = 1..4
/// (2, 5, 8, 11 for ViT-S/14's 12 layers).
std::vector<int64_t> dinov2_feature_layers(int64_t num_layers);

}  // namespace mcm::models
