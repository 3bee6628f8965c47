// The CLIP text tower as transformers' CLIPTextModel: token + position embeddings, pre-LN causal
// transformer layers (quick_gelu or gelu MLP), final LayerNorm, pooled output at the end token.
// Loads a transformers `text_encoder/` folder; keys with or without the legacy "text_model."
// prefix (transformers 4 wrote it, 5 does not) are accepted.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/encoders.hpp"
#include "tokenizer/clip_tokenizer.hpp"

namespace mcm::models {

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  ///< "quick_gelu" or "gelu"
  double layer_norm_eps = 1e-5;
  int64_t eos_token_id = 49407;           ///< 2 selects the legacy argmax-of-ids pooling

  static ClipTextConfig from_json(const nlohmann::json& doc, const std::filesystem::path& file);
};

struct ClipTextOutput {
  torch::Tensor last_hidden_state;  ///< [B, L, hidden]
  torch::Tensor pooled;             ///< [B, hidden], at each sequence's end token
};

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& cfg);
  /// ids [B, L] (int64); optional attention mask [B, L] with 1 for real tokens, 0 for padding.
  ClipTextOutput forward(const torch::Tensor& ids, const std::optional<torch::Tensor>& attention_mask = std::nullopt);
  const ClipTextConfig& config() const { return cfg_; }

 private:
  struct Layer;
  ClipTextConfig cfg_;
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
  std::vector<std::shared_ptr<Layer>> layers_;
};
TORCH_MODULE(ClipTextModel);

/// From a transformers `text_encoder/` folder, strictly, in `dtype`.
ClipTextModel load_clip_text_model(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32);

/// CLIP tokenizer + text model behind the prep interface: captions -> last_hidden_state
/// [B, context_length, hidden] (what diffusers' text-to-video pipelines condition on; no
/// attention mask, as those pipelines when the config has no use_attention_mask).
class ClipTextEncoder : public TextEncoder {
 public:
  /// `model_dir`: transformers text_encoder/ folder; `tokenizer_dir`: its tokenizer/ folder.
  ClipTextEncoder(const std::filesystem::path& model_dir, const std::filesystem::path& tokenizer_dir);
  torch::Tensor encode(const std::vector<std::string>& captions) override;
  void place(torch::Device device, torch::ScalarType dtype) override { model_->to(device, dtype); }
  int64_t max_length() const override { return tokenizer_.context_length(); }
  int64_t dim() const override { return model_->config().hidden_size; }
  std::string name() const override;
  std::string content_hash() const override { return hash_; }
  const tokenizer::ClipTokenizer& tokenizer() const { return tokenizer_; }

 private:
  tokenizer::ClipTokenizer tokenizer_;
  ClipTextModel model_{nullptr};
  std::string hash_;
};

}  // namespace mcm::models
