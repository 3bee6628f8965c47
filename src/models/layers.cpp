// The diffusers building blocks (see layers.hpp); each forward mirrors the reference op order.
#include "models/layers.hpp"

#include <cmath>

#include "core/error.hpp"

namespace mcm::models::layers {
namespace nn = torch::nn;
namespace F = torch::nn::functional;

Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return Conv2d(in, out, kernel, stride, padding);
}

// ---- LoRA-capable Linear and Conv2d ----
// Default initialisation is torch's (taken from a temporary nn::Linear / nn::Conv2d); LoRA's A is
// kaiming-uniform(a = sqrt 5) and B zero, as PEFT, so a fresh adapter leaves the output unchanged.

void LoraHost::start_lora(bool already, int64_t rank, double alpha) {
  require<ConfigError>(!already, "LoRA already attached");
  require<ConfigError>(rank >= 1, "LoRA rank must be >= 1, got ", rank);
  scale_ = alpha / static_cast<double>(rank);
}

void LoraHost::finish_lora(nn::Module& a, torch::Tensor& b_weight, nn::Module& b) {
  torch::NoGradGuard g;
  const auto& w = base_weight();
  a.to(w.device(), w.scalar_type());
  b.to(w.device(), w.scalar_type());
  b_weight.zero_();
}

void LoraHost::merge_lora() {
  require<Error>(has_lora(), "merge: no LoRA attached");
  if (merged_) return;
  torch::NoGradGuard g;
  auto& w = base_weight();
  w.copy_((w.to(torch::kFloat32) + delta()).to(w.scalar_type()));
  merged_ = true;
}

void LoraHost::unmerge_lora() {
  if (!merged_) return;
  torch::NoGradGuard g;
  auto& w = base_weight();
  w.copy_((w.to(torch::kFloat32) - delta()).to(w.scalar_type()));
  merged_ = false;
}

namespace {
thread_local int meta_depth = 0;
}
MetaConstruction::MetaConstruction() { ++meta_depth; }
MetaConstruction::~MetaConstruction() { --meta_depth; }
bool MetaConstruction::active() { return meta_depth > 0; }

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  if (MetaConstruction::active()) {
    weight = register_parameter("weight", torch::empty({out, in}, torch::kMeta));
    if (with_bias) bias = register_parameter("bias", torch::empty({out}, torch::kMeta));
    return;
  }
  nn::Linear init(nn::LinearOptions(in, out).bias(with_bias));
  weight = register_parameter("weight", init->weight.detach().clone());
  if (with_bias) bias = register_parameter("bias", init->bias.detach().clone());
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  auto y = F::linear(x, weight, bias);
  if (!lora_A.is_empty() && !merged_) y = y + lora_B(lora_A(lora_dropout(x))) * scale_;
  return y;
}

void LinearImpl::add_lora(int64_t rank, double alpha, double dropout) {
  start_lora(has_lora(), rank, alpha);
  lora_dropout = register_module("lora_dropout", nn::Dropout(dropout));
  lora_A = register_module("lora_A", nn::Linear(nn::LinearOptions(weight.size(1), rank).bias(false)));
  lora_B = register_module("lora_B", nn::Linear(nn::LinearOptions(rank, weight.size(0)).bias(false)));
  finish_lora(*lora_A, lora_B->weight, *lora_B);
}

torch::Tensor LinearImpl::delta() const {
  return torch::matmul(lora_B->weight.to(torch::kFloat32), lora_A->weight.to(torch::kFloat32)) * scale_;
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), stride_(stride), padding_(padding) {
  if (MetaConstruction::active()) {
    weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}, torch::kMeta));
    if (with_bias) bias = register_parameter("bias", torch::empty({out}, torch::kMeta));
    return;
  }
  nn::Conv2d init(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(with_bias));
  weight = register_parameter("weight", init->weight.detach().clone());
  if (with_bias) bias = register_parameter("bias", init->bias.detach().clone());
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  auto y = F::conv2d(x, weight, F::Conv2dFuncOptions().bias(bias).stride(stride_).padding(padding_));
  if (!lora_A.is_empty() && !merged_) y = y + lora_B(lora_A(lora_dropout(x))) * scale_;
  return y;
}

void Conv2dImpl::add_lora(int64_t rank, double alpha, double dropout) {
  start_lora(has_lora(), rank, alpha);
  lora_dropout = register_module("lora_dropout", nn::Dropout(dropout));
  lora_A = register_module(
      "lora_A", nn::Conv2d(nn::Conv2dOptions(in_, rank, kernel_).stride(stride_).padding(padding_).bias(false)));
  lora_B = register_module("lora_B", nn::Conv2d(nn::Conv2dOptions(rank, out_, 1).bias(false)));
  finish_lora(*lora_A, lora_B->weight, *lora_B);
}

torch::Tensor Conv2dImpl::delta() const {
  const int64_t rank = lora_A->weight.size(0);
  auto b = lora_B->weight.to(torch::kFloat32).reshape({out_, rank});
  auto a = lora_A->weight.to(torch::kFloat32).reshape({rank, -1});
  return torch::matmul(b, a).reshape(weight.sizes()) * scale_;
}

nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps) {
  require<ConfigError>(groups > 0 && channels % groups == 0, "GroupNorm: ", channels,
                       " channels are not divisible into ", groups, " groups (norm_num_groups)");
  return nn::GroupNorm(nn::GroupNormOptions(groups, channels).eps(eps).affine(true));
}

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double downscale_freq_shift) {
  require<DataError>(timesteps.dim() == 1, "timesteps must be 1-D, got ", timesteps.sizes());
  const int64_t half = dim / 2;
  auto exponent = -std::log(10000.0) *
                  torch::arange(0, half, torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device()));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  auto emb = torch::exp(exponent);
  emb = timesteps.unsqueeze(1).to(torch::kFloat32) * emb.unsqueeze(0);
  emb = torch::cat({torch::sin(emb), torch::cos(emb)}, -1);
  if (flip_sin_to_cos) emb = torch::cat({emb.slice(1, half), emb.slice(1, 0, half)}, -1);
  if (dim % 2 == 1) emb = F::pad(emb, F::PadFuncOptions({0, 1, 0, 0}));
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t dim, int64_t cond_proj_dim) {
  linear_1 = register_module("linear_1", Linear(in, dim));
  if (cond_proj_dim > 0) cond_proj = register_module("cond_proj", Linear(cond_proj_dim, in, false));
  linear_2 = register_module("linear_2", Linear(dim, dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(torch::Tensor x, const std::optional<torch::Tensor>& cond) {
  if (cond) {
    require<DataError>(!cond_proj.is_empty(), "timestep_cond given but the model has no time_cond_proj_dim");
    x = x + cond_proj(*cond);
  } else {
    require<DataError>(cond_proj.is_empty(), "the model has time_cond_proj_dim but no timestep_cond was given");
  }
  return linear_2(torch::silu(linear_1(x)));
}

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, double eps,
                                     double output_scale_factor, double dropout)
    : output_scale_factor_(output_scale_factor) {
  norm1 = register_module("norm1", group_norm(groups, in, eps));
  conv1 = register_module("conv1", conv2d(in, out, 3, 1, 1));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", Linear(temb_channels, out));
  norm2 = register_module("norm2", group_norm(groups, out, eps));
  dropout_ = register_module("dropout", nn::Dropout(dropout));
  conv2 = register_module("conv2", conv2d(out, out, 3, 1, 1));
  if (in != out) conv_shortcut = register_module("conv_shortcut", conv2d(in, out, 1));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const std::optional<torch::Tensor>& temb) {
  auto h = conv1(torch::silu(norm1(x)));
  if (!time_emb_proj.is_empty()) {
    require<DataError>(temb.has_value(), "ResnetBlock2D needs a time embedding");
    h = h + time_emb_proj(torch::silu(*temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2(dropout_(torch::silu(norm2(h))));
  auto shortcut = conv_shortcut.is_empty() ? x : conv_shortcut(x);
  auto out = shortcut + h;
  return output_scale_factor_ == 1.0 ? out : out / output_scale_factor_;
}

AttentionImpl::AttentionImpl(const AttentionOptions& o) : o_(o) {
  const int64_t inner = o.heads * o.dim_head;
  const int64_t kv_in = o.cross_dim > 0 ? o.cross_dim : o.query_dim;
  if (o.group_norm_groups > 0)
    group_norm = register_module("group_norm", layers::group_norm(o.group_norm_groups, o.query_dim, o.group_norm_eps));
  to_q = register_module("to_q", Linear(o.query_dim, inner, o.qkv_bias));
  to_k = register_module("to_k", Linear(kv_in, inner, o.qkv_bias));
  to_v = register_module("to_v", Linear(kv_in, inner, o.qkv_bias));
  out_proj = Linear(inner, o.query_dim, o.out_bias);
  out_dropout = nn::Dropout(o.dropout);
  to_out = register_module("to_out", nn::ModuleList(out_proj, out_dropout));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& input, const std::optional<torch::Tensor>& context) {
  const bool spatial = input.dim() == 4;
  torch::Tensor x = input;
  if (spatial) x = input.flatten(2).transpose(1, 2);  // [B, HW, C]
  if (!group_norm.is_empty()) x = group_norm(x.transpose(1, 2)).transpose(1, 2);
  const torch::Tensor& kv = context ? *context : x;
  const int64_t B = x.size(0);
  auto heads = [&](const torch::Tensor& t) { return t.view({B, -1, o_.heads, o_.dim_head}).transpose(1, 2); };
  auto q = heads(to_q(x)), k = heads(to_k(kv)), v = heads(to_v(kv));
  auto a = at::scaled_dot_product_attention(q, k, v);
  a = a.transpose(1, 2).reshape({B, -1, o_.heads * o_.dim_head});
  auto out = out_dropout(out_proj(a));
  if (spatial) out = out.transpose(-1, -2).reshape(input.sizes());
  if (o_.residual) out = out + input;
  if (o_.rescale_output_factor != 1.0) out = out / o_.rescale_output_factor;
  return out;
}

GegluImpl::GegluImpl(int64_t in, int64_t out) { proj = register_module("proj", Linear(in, out * 2)); }

namespace {

// Note [GEGLU backward]
// hidden * gelu(gate) on the two halves of one projection. Autograd of chunk-mul-gelu computes
// the two halves' gradients as separate tensors and then concatenates them (SplitBackward: a
// copy of the projection-sized gradient, the largest activation of the block). This function
// writes them into the halves of one tensor instead, with the same ops on the same values as
// autograd's MulBackward and GeluBackward, so the gradients are bit for bit the same.
struct GegluFunction : torch::autograd::Function<GegluFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& projected) {
    auto parts = projected.chunk(2, -1);
    auto gate = torch::gelu(parts[1]);
    ctx->save_for_backward({projected, gate});
    return parts[0] * gate;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& projected = saved[0];
    const auto& gate = saved[1];
    const auto& dy = grads[0];
    auto parts = projected.chunk(2, -1);
    auto d = torch::empty_like(projected, torch::MemoryFormat::Contiguous);
    auto dparts = d.chunk(2, -1);
    torch::mul_out(dparts[0], dy, gate);
    torch::mul_out(dparts[1], dy, parts[0]);
    torch::gelu_backward_out(dparts[1], dparts[1], parts[1]);
    return {d};
  }
};

}  // namespace

torch::Tensor GegluImpl::forward(const torch::Tensor& x) {
  auto projected = proj(x);
  if (torch::GradMode::is_enabled() && projected.requires_grad()) return GegluFunction::apply(projected);
  auto parts = projected.chunk(2, -1);
  return parts[0] * torch::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult, double dropout) {
  const int64_t inner = dim * mult;
  geglu = Geglu(dim, inner);
  drop = nn::Dropout(dropout);
  out = Linear(inner, dim);
  net = register_module("net", nn::ModuleList(geglu, drop, out));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return out(drop(geglu(x))); }

SinusoidalPositionalEmbeddingImpl::SinusoidalPositionalEmbeddingImpl(int64_t dim, int64_t max_len) {
  // diffusers' float32 arithmetic: exp(k * (-ln(1e4) / dim)) for even k, times the integer position.
  auto position = torch::arange(max_len, torch::kLong).unsqueeze(1);
  auto div_term = torch::exp(torch::arange(0, dim, 2, torch::kLong) * (-std::log(10000.0) / static_cast<double>(dim)));
  auto table = torch::zeros({1, max_len, dim});
  auto angle = position * div_term;  // float32 [max_len, ceil(dim / 2)]
  table.index_put_({0, torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)}, torch::sin(angle));
  table.index_put_({0, torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)},
                   torch::cos(angle).slice(1, 0, dim / 2));
  pe = register_buffer("pe", table);
}

torch::Tensor SinusoidalPositionalEmbeddingImpl::forward(const torch::Tensor& x) {
  require<DataError>(x.dim() == 3 && x.size(1) <= pe.size(1) && x.size(2) == pe.size(2), "positional embedding: ",
                     x.sizes(), " does not fit a table of ", pe.size(1), " positions x ", pe.size(2),
                     " channels (AnimateDiff's motion_max_seq_length caps the frames)");
  return x + pe.slice(1, 0, x.size(1)).to(x.scalar_type());
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t cross_dim,
                                                     double dropout, int64_t pos_embed_len) {
  auto ln = [&] { return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5).elementwise_affine(true)); };
  AttentionOptions a;
  a.query_dim = dim;
  a.heads = heads;
  a.dim_head = dim_head;
  a.dropout = dropout;
  if (pos_embed_len > 0) pos_embed = register_module("pos_embed", SinusoidalPositionalEmbedding(dim, pos_embed_len));
  norm1 = register_module("norm1", ln());
  attn1 = register_module("attn1", Attention(a));
  a.cross_dim = cross_dim;
  norm2 = register_module("norm2", ln());
  attn2 = register_module("attn2", Attention(a));
  norm3 = register_module("norm3", ln());
  ff = register_module("ff", FeedForward(dim, 4, dropout));
}

torch::Tensor BasicTransformerBlockImpl::forward(torch::Tensor x, const std::optional<torch::Tensor>& context) {
  auto n = norm1(x);
  if (!pos_embed.is_empty()) n = pos_embed(n);
  x = attn1(n) + x;
  n = norm2(x);
  if (!pos_embed.is_empty()) n = pos_embed(n);
  x = attn2(n, context) + x;
  return ff(norm3(x)) + x;
}

Transformer2DImpl::Transformer2DImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups,
                                     int64_t cross_dim, bool linear_projection, int64_t layers) {
  const int64_t inner = heads * dim_head;
  norm = register_module("norm", group_norm(groups, in_channels, 1e-6));
  if (linear_projection) proj_in = register_module("proj_in", Linear(in_channels, inner));
  else conv_in = register_module("proj_in", conv2d(in_channels, inner, 1));
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    blocks_.push_back(BasicTransformerBlock(inner, heads, dim_head, cross_dim));
    transformer_blocks->push_back(blocks_.back());
  }
  if (linear_projection) proj_out = register_module("proj_out", Linear(inner, in_channels));
  else conv_out = register_module("proj_out", conv2d(inner, in_channels, 1));
}

torch::Tensor Transformer2DImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  torch::Tensor h;
  if (!conv_in.is_empty()) {  // 1x1 convolutions before the flattening and after it (diffusers' order)
    h = conv_in(norm(x));
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, h.size(1)});
  } else {
    h = proj_in(norm(x).permute({0, 2, 3, 1}).reshape({B, H * W, C}));
  }
  for (auto& block : blocks_) h = block(h, context);
  if (!conv_out.is_empty()) {
    h = h.reshape({B, H, W, -1}).permute({0, 3, 1, 2}).contiguous();
    return conv_out(h) + x;
  }
  h = proj_out(h);
  h = h.reshape({B, H, W, -1}).permute({0, 3, 1, 2}).contiguous();
  return h + x;
}

TransformerTemporalImpl::TransformerTemporalImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups,
                                                 int64_t pos_embed_len, int64_t layers) {
  const int64_t inner = heads * dim_head;
  norm = register_module("norm", group_norm(groups, in_channels, 1e-6));
  proj_in = register_module("proj_in", Linear(in_channels, inner));
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t l = 0; l < layers; ++l) {
    blocks_.push_back(BasicTransformerBlock(inner, heads, dim_head, /*cross_dim=*/0, 0.0, pos_embed_len));
    transformer_blocks->push_back(blocks_.back());
  }
  proj_out = register_module("proj_out", Linear(inner, in_channels));
}

torch::Tensor TransformerTemporalImpl::forward(const torch::Tensor& x, int64_t F) {
  const int64_t BF = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), B = BF / F;
  auto h = x.reshape({B, F, C, H, W}).permute({0, 2, 1, 3, 4});
  h = norm(h);
  h = h.permute({0, 3, 4, 2, 1}).reshape({B * H * W, F, C});
  h = proj_in(h);
  for (auto& block : blocks_) h = block(h, std::nullopt);
  h = proj_out(h);
  h = h.reshape({B, H, W, F, C}).permute({0, 3, 4, 1, 2}).contiguous().reshape({BF, C, H, W});
  return h + x;
}

TemporalConvLayerImpl::TemporalConvLayerImpl(int64_t dim, int64_t groups, double dropout) {
  auto conv3d = [&] { return nn::Conv3d(nn::Conv3dOptions(dim, dim, {3, 1, 1}).padding({1, 0, 0})); };
  for (size_t i = 0; i < stages_.size(); ++i) {
    auto& s = stages_[i];
    s.norm = group_norm(groups, dim, 1e-5);
    s.conv = conv3d();
    nn::Sequential seq(s.norm, nn::SiLU());
    if (i > 0) {  // conv1 has no dropout (diffusers' indices: conv1.2 is its conv, convN.3 the others')
      s.drop = nn::Dropout(dropout);
      seq->push_back(s.drop);
    }
    seq->push_back(s.conv);
    register_module("conv" + std::to_string(i + 1), seq);
  }
  // The reference zero-initialises the last conv so a fresh layer is the identity.
  torch::NoGradGuard g;
  for (auto& p : stages_.back().conv->parameters()) p.zero_();
}

// Note [temporal conv as conv2d]
// A (3, 1, 1) Conv3d over [B, C, F, H, W] is a (3, 1) Conv2d over [B, C, F, H*W] (same memory,
// same sums), and the layer runs in that 4-D view. On the CPU the convolution runs as that Conv2d:
// with one thread and a batch under 16, ATen sends a Conv3d whose kernel ends in 1x1 to its im2col
// path (slow_conv3d), while the Conv2d goes to oneDNN, about twice as fast forward and backward.
// Other devices keep the reference's Conv3d. GroupNorm, SiLU and dropout are elementwise or
// per-group over the same contiguous memory, so they (and dropout's random draws) are unchanged.
torch::Tensor TemporalConvLayerImpl::forward(const torch::Tensor& x, int64_t F) {
  const int64_t BF = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = x.reshape({BF / F, F, C, H * W}).permute({0, 2, 1, 3});  // [B, C, F, HW]
  auto identity = h;
  for (auto& s : stages_) {
    h = torch::silu(s.norm(h));
    if (!s.drop.is_empty()) h = s.drop(h);
    if (h.is_cpu())
      h = torch::conv2d(h, s.conv->weight.squeeze(-1), s.conv->bias, /*stride=*/{1, 1}, /*padding=*/{1, 0});
    else
      h = s.conv(h.reshape({BF / F, C, F, H, W})).reshape({BF / F, C, F, H * W});
  }
  h = identity + h;
  return h.permute({0, 2, 1, 3}).reshape({BF, C, H, W});
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding) : padding_(padding) {
  conv = register_module("conv", conv2d(channels, channels, 3, 2, padding));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (padding_ == 0) return conv(F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).mode(torch::kConstant).value(0)));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) { conv = register_module("conv", conv2d(channels, channels, 3, 1, 1)); }

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, const std::optional<std::vector<int64_t>>& size) {
  // As the reference: large batches are made contiguous (its bf16 upcast applies to torch < 2.1 only).
  torch::Tensor h = x;
  if (h.size(0) >= 64) h = h.contiguous();
  auto opts = F::InterpolateFuncOptions().mode(torch::kNearest);
  if (size)
    opts.size(*size);
  else
    opts.scale_factor(std::vector<double>{2.0, 2.0});
  return conv(F::interpolate(h, opts));
}

}  // namespace mcm::models::layers
