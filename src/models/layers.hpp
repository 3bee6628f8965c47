// Building blocks of the diffusers UNets and VAE, with diffusers' attribute names, so that
// `named_parameters()` yields the reference state-dict keys ("resnets.0.conv1.weight", ...).
// Each block follows the reference forward exactly (same op order, same eps, same attention op)
// so fp32 outputs agree to rounding; where a cheaper op sequence computes the same values, a Note
// in layers.cpp says why. Include only from model translation units.
#pragma once
#include <torch/torch.h>

#include <array>
#include <optional>

namespace mcm::models::layers {

/// While alive on this thread, Linear and Conv2d create their weights on the meta device without
/// initialising them: a paper-size UNet is built for its structure and parameter counts (`mcm
/// distill --dry-run`) without allocating its weights. Not copyable; nests.
class MetaConstruction {
 public:
  MetaConstruction();
  ~MetaConstruction();
  MetaConstruction(const MetaConstruction&) = delete;
  MetaConstruction& operator=(const MetaConstruction&) = delete;
  static bool active();
};

/// A layer that can carry a LoRA adapter (lora_A, lora_B; PEFT's names and initialisation):
/// y = base(x) + (alpha / rank) * B(A(dropout(x))), or base with the product merged into it.
class LoraHost {
 public:
  virtual ~LoraHost() = default;
  virtual void add_lora(int64_t rank, double alpha, double dropout) = 0;
  virtual bool has_lora() const = 0;
  /// Parameters an adapter of this rank adds (lora_A and lora_B), without building it.
  virtual int64_t lora_parameters(int64_t rank) const = 0;
  /// weight += scale * B A (idempotent, in fp32); unmerge subtracts it again.
  void merge_lora();
  void unmerge_lora();
  bool lora_merged() const { return merged_; }
  double lora_scale() const { return scale_; }

 protected:
  virtual torch::Tensor& base_weight() = 0;
  /// scale * B A in the base weight's shape, fp32.
  virtual torch::Tensor delta() const = 0;
  /// Validates rank and records the scale; called by add_lora before it builds A and B.
  void start_lora(bool already, int64_t rank, double alpha);
  /// A and B to the weight's device and dtype, B zeroed (a fresh adapter is the identity).
  void finish_lora(torch::nn::Module& a, torch::Tensor& b_weight, torch::nn::Module& b);
  double scale_ = 0;
  bool merged_ = false;
};

/// nn.Linear with the reference's parameter names ("weight", "bias") and an optional LoRA.
class LinearImpl : public torch::nn::Module, public LoraHost {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  void add_lora(int64_t rank, double alpha, double dropout) override;
  bool has_lora() const override { return !lora_A.is_empty(); }
  int64_t lora_parameters(int64_t rank) const override { return rank * (weight.size(0) + weight.size(1)); }
  torch::Tensor weight, bias;

 protected:
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor delta() const override;

 private:
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  torch::nn::Dropout lora_dropout{nullptr};
};
TORCH_MODULE(Linear);

/// nn.Conv2d (square kernel, stride, padding) with reference names and an optional LoRA
/// (lora_A: the layer's kernel to `rank` channels, lora_B: 1x1 back, as PEFT).
class Conv2dImpl : public torch::nn::Module, public LoraHost {
 public:
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  void add_lora(int64_t rank, double alpha, double dropout) override;
  bool has_lora() const override { return !lora_A.is_empty(); }
  int64_t lora_parameters(int64_t rank) const override { return rank * (in_ * kernel_ * kernel_ + out_); }
  torch::Tensor weight, bias;

 protected:
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor delta() const override;

 private:
  int64_t in_, out_, kernel_, stride_, padding_;
  torch::nn::Conv2d lora_A{nullptr}, lora_B{nullptr};
  torch::nn::Dropout lora_dropout{nullptr};
};
TORCH_MODULE(Conv2d);

/// Sinusoidal timestep features as diffusers' get_timestep_embedding (max_period 10000).
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double downscale_freq_shift);

/// linear_1 -> SiLU -> linear_2, with an optional cond_proj added to the input first. Stricter
/// than diffusers on purpose: a model with cond_proj refuses a call without a condition (diffusers
/// silently skips it, which hides a missing guidance embedding).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in, int64_t dim, int64_t cond_proj_dim = 0);
  torch::Tensor forward(torch::Tensor x, const std::optional<torch::Tensor>& cond = std::nullopt);

 private:
  Linear linear_1{nullptr}, linear_2{nullptr}, cond_proj{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

/// ResnetBlock2D (pre-norm, "default" time embedding norm, SiLU). temb_channels 0: no time input.
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, double eps,
                    double output_scale_factor = 1.0, double dropout = 0.0);
  torch::Tensor forward(const torch::Tensor& x, const std::optional<torch::Tensor>& temb = std::nullopt);

 private:
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  Linear time_emb_proj{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  double output_scale_factor_;
};
TORCH_MODULE(ResnetBlock2D);

/// Attention (diffusers `Attention` with AttnProcessor2_0): to_q/to_k/to_v, to_out.0, scaled dot
/// product attention. cross_dim 0 means self-attention. `group_norm_groups` > 0 adds the VAE
/// mid-block form: GroupNorm on the input, [B,C,H,W] in and out, residual, rescale.
struct AttentionOptions {
  int64_t query_dim = 0;
  int64_t cross_dim = 0;
  int64_t heads = 1;
  int64_t dim_head = 64;
  bool qkv_bias = false;
  bool out_bias = true;
  double dropout = 0.0;
  int64_t group_norm_groups = 0;
  double group_norm_eps = 1e-6;
  bool residual = false;
  double rescale_output_factor = 1.0;
};
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& o);
  /// [B, N, query_dim] (or [B, C, H, W] for the spatial form); context [B, M, cross_dim].
  torch::Tensor forward(const torch::Tensor& x, const std::optional<torch::Tensor>& context = std::nullopt);

 private:
  AttentionOptions o_;
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out_proj{nullptr};
  torch::nn::ModuleList to_out{nullptr};
  torch::nn::Dropout out_dropout{nullptr};
  torch::nn::GroupNorm group_norm{nullptr};
};
TORCH_MODULE(Attention);

/// GEGLU: proj -> (hidden, gate) -> hidden * gelu(gate) (exact gelu).
class GegluImpl : public torch::nn::Module {
 public:
  GegluImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Linear proj{nullptr};
};
TORCH_MODULE(Geglu);

/// FeedForward with GEGLU: net.0 (GEGLU), net.1 (dropout), net.2 (Linear).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t mult = 4, double dropout = 0.0);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::ModuleList net{nullptr};
  Geglu geglu{nullptr};
  torch::nn::Dropout drop{nullptr};
  Linear out{nullptr};
};
TORCH_MODULE(FeedForward);

/// SinusoidalPositionalEmbedding: x + pe[:, :N], pe [1, max_len, dim] with sin at even and cos at
/// odd channels (AnimateDiff's motion modules). `pe` is a persistent buffer, as in diffusers'
/// state dicts ("...pos_embed.pe").
class SinusoidalPositionalEmbeddingImpl : public torch::nn::Module {
 public:
  SinusoidalPositionalEmbeddingImpl(int64_t dim, int64_t max_len);
  /// x [B, N, dim], N <= max_len (DataError otherwise).
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::Tensor pe;
};
TORCH_MODULE(SinusoidalPositionalEmbedding);

/// BasicTransformerBlock (layer_norm): self-attention, cross-attention (or a second self-attention
/// when cross_dim is 0, diffusers' double_self_attention), GEGLU feed-forward; LayerNorm eps 1e-5.
/// `pos_embed_len` > 0 adds a sinusoidal positional embedding (`pos_embed`) to the normed input of
/// both attentions, not of the feed-forward (diffusers' positional_embeddings="sinusoidal").
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t cross_dim, double dropout = 0.0,
                            int64_t pos_embed_len = 0);
  torch::Tensor forward(torch::Tensor x, const std::optional<torch::Tensor>& context);

 private:
  SinusoidalPositionalEmbedding pos_embed{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

/// Transformer2DModel, continuous input: per frame, attention over H*W tokens with cross-attention,
/// `layers` blocks. Linear projections (use_linear_projection=True, as every UNet3D block builds
/// it) or 1x1 convolutions applied before the flattening and after it (False: Stable Diffusion 1.5).
class Transformer2DImpl : public torch::nn::Module {
 public:
  Transformer2DImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups, int64_t cross_dim,
                    bool linear_projection = true, int64_t layers = 1);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

 private:
  torch::nn::GroupNorm norm{nullptr};
  Linear proj_in{nullptr}, proj_out{nullptr};
  Conv2d conv_in{nullptr}, conv_out{nullptr};  ///< registered as proj_in / proj_out when not linear
  torch::nn::ModuleList transformer_blocks{nullptr};
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(Transformer2D);

/// TransformerTemporalModel: per pixel, self-attention over the frames (both attentions are
/// self-attentions); GroupNorm over [B, C, F, H, W]. With `pos_embed_len` > 0 it is AnimateDiff's
/// motion module (AnimateDiffTransformer3D): the same, with sinusoidal frame positions in every
/// block; `layers` blocks.
class TransformerTemporalImpl : public torch::nn::Module {
 public:
  TransformerTemporalImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups, int64_t pos_embed_len = 0,
                          int64_t layers = 1);
  torch::Tensor forward(const torch::Tensor& x, int64_t num_frames);

 private:
  torch::nn::GroupNorm norm{nullptr};
  Linear proj_in{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(TransformerTemporal);

/// ModelScope's TemporalConvLayer: four GroupNorm-SiLU-(Dropout)-Conv3d(3,1,1) stages over time,
/// residual. conv1 is Sequential(GN, SiLU, Conv3d); conv2..4 are Sequential(GN, SiLU, Dropout, Conv3d)
/// (the names); forward runs the stages itself, see Note [temporal conv as conv2d] in layers.cpp.
class TemporalConvLayerImpl : public torch::nn::Module {
 public:
  TemporalConvLayerImpl(int64_t dim, int64_t groups, double dropout = 0.1);
  torch::Tensor forward(const torch::Tensor& x, int64_t num_frames);

 private:
  struct Stage {
    torch::nn::GroupNorm norm{nullptr};
    torch::nn::Dropout drop{nullptr};  ///< empty in conv1
    torch::nn::Conv3d conv{nullptr};
  };
  std::array<Stage, 4> stages_;
};
TORCH_MODULE(TemporalConvLayer);

/// Downsample2D with a stride-2 3x3 conv named `conv`; padding 0 pads (0,1,0,1) first (VAE).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Conv2d conv{nullptr};
  int64_t padding_;
};
TORCH_MODULE(Downsample2D);

/// Upsample2D: nearest x2 (or to `size`), then a 3x3 conv named `conv`.
class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, const std::optional<std::vector<int64_t>>& size = std::nullopt);

 private:
  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

/// Helpers shared by the model files.
Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0);
torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps);

}  // namespace mcm::models::layers
