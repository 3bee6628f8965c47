// UNet3DConditionModel (ModelScopeT2V) with diffusers' structure, names and forward.
#include "models/unet3d.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/lora.hpp"
#include "models/unet_common.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace nn = torch::nn;
namespace fs = std::filesystem;
using namespace layers;

Unet3DConfig Unet3DConfig::from_json(const nlohmann::json& doc, const fs::path& file) {
  ConfigReader r(doc, file);
  Unet3DConfig c;
  if (r.has("_class_name") && r.string("_class_name") != "UNet3DConditionModel")
    r.fail("_class_name", cat("expected UNet3DConditionModel, got ", r.string("_class_name")));
  c.in_channels = r.integer("in_channels", c.in_channels);
  c.out_channels = r.integer("out_channels", c.out_channels);
  c.down_block_types = r.strings("down_block_types", c.down_block_types);
  c.up_block_types = r.strings("up_block_types", c.up_block_types);
  c.block_out_channels = r.integers("block_out_channels", c.block_out_channels);
  c.layers_per_block = r.integer("layers_per_block", c.layers_per_block);
  c.downsample_padding = r.integer("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = r.number("mid_block_scale_factor", c.mid_block_scale_factor);
  c.norm_num_groups = r.integer("norm_num_groups", c.norm_num_groups);
  c.norm_eps = r.number("norm_eps", c.norm_eps);
  c.cross_attention_dim = r.integer("cross_attention_dim", c.cross_attention_dim);
  if (r.has("attention_head_dim") && doc.at("attention_head_dim").is_array())
    r.fail("attention_head_dim", "a list is not supported: UNet3DConditionModel builds transformer_in from one value");
  c.attention_head_dim = r.integer("attention_head_dim", c.attention_head_dim);
  c.time_cond_proj_dim = r.integer("time_cond_proj_dim", 0);
  c.sample_size = r.integer("sample_size", c.sample_size);
  if (r.has("num_attention_heads"))
    r.fail("num_attention_heads", "must be null: UNet3DConditionModel reads the head width from attention_head_dim");
  if (r.string("act_fn", "silu") != "silu") r.fail("act_fn", "only \"silu\" is supported");
  const size_t n = c.block_out_channels.size();
  if (n == 0) r.fail("block_out_channels", "empty");
  for (const char* k : {"in_channels", "out_channels", "norm_num_groups", "attention_head_dim", "cross_attention_dim"})
    if (r.integer(k, 1) < 1) r.fail(k, "must be >= 1");
  if (c.down_block_types.size() != n)
    r.fail("down_block_types", cat(c.down_block_types.size(), " blocks but ", n, " block_out_channels"));
  if (c.up_block_types.size() != n)
    r.fail("up_block_types", cat(c.up_block_types.size(), " blocks but ", n, " block_out_channels"));
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock3D" && t != "DownBlock3D") r.fail("down_block_types", cat("unknown block type ", t));
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock3D" && t != "UpBlock3D") r.fail("up_block_types", cat("unknown block type ", t));
  for (int64_t ch : c.block_out_channels) {
    if (ch <= 0 || ch % c.norm_num_groups != 0)
      r.fail("block_out_channels", cat(ch, " is not a positive multiple of norm_num_groups ", c.norm_num_groups));
    if (ch % c.attention_head_dim != 0)
      r.fail("attention_head_dim", cat(c.attention_head_dim, " does not divide block width ", ch));
  }
  if (c.layers_per_block < 1) r.fail("layers_per_block", "must be >= 1");
  return c;
}

nlohmann::json Unet3DConfig::to_json() const {
  return {{"_class_name", "UNet3DConditionModel"},
          {"_diffusers_version", "0.42.1"},
          {"act_fn", "silu"},
          {"attention_head_dim", attention_head_dim},
          {"block_out_channels", block_out_channels},
          {"cross_attention_dim", cross_attention_dim},
          {"down_block_types", down_block_types},
          {"downsample_padding", downsample_padding},
          {"in_channels", in_channels},
          {"layers_per_block", layers_per_block},
          {"mid_block_scale_factor", mid_block_scale_factor},
          {"norm_eps", norm_eps},
          {"norm_num_groups", norm_num_groups},
          {"num_attention_heads", nullptr},
          {"out_channels", out_channels},
          {"sample_size", sample_size},
          {"time_cond_proj_dim", time_cond_proj_dim > 0 ? nlohmann::json(time_cond_proj_dim) : nlohmann::json(nullptr)},
          {"up_block_types", up_block_types}};
}

/// One down, mid or up block: resnets and temp_convs, optionally attentions and temp_attentions,
/// and a downsampler or upsampler, with diffusers' list names.
struct Unet3DImpl::Block : nn::Module {
  enum Kind { Down, Mid, Up } kind;
  bool cross;
  std::vector<ResnetBlock2D> res;
  std::vector<TemporalConvLayer> tconv;
  std::vector<Transformer2D> attn;
  std::vector<TransformerTemporal> tattn;
  Downsample2D down{nullptr};
  Upsample2D up{nullptr};

  Block(Kind k, bool cross_attention) : kind(k), cross(cross_attention) {}

  void add_layer(const Unet3DConfig& c, int64_t in, int64_t out, double scale, bool with_attention) {
    res.push_back(ResnetBlock2D(in, out, c.block_out_channels[0] * 4, c.norm_num_groups, c.norm_eps, scale));
    tconv.push_back(TemporalConvLayer(out, c.norm_num_groups, 0.1));
    if (with_attention) {
      const int64_t heads = out / c.attention_head_dim;
      attn.push_back(Transformer2D(heads, c.attention_head_dim, out, c.norm_num_groups, c.cross_attention_dim));
      tattn.push_back(TransformerTemporal(heads, c.attention_head_dim, out, c.norm_num_groups));
    }
  }
  // Registration order follows diffusers' (resnets, temp_convs, attentions, temp_attentions).
  void register_all() {
    unet_common::register_list(*this, "resnets", res);
    unet_common::register_list(*this, "temp_convs", tconv);
    unet_common::register_list(*this, "attentions", attn);
    unet_common::register_list(*this, "temp_attentions", tattn);
    if (!down.is_empty()) register_module("downsamplers", nn::ModuleList(down));
    if (!up.is_empty()) register_module("upsamplers", nn::ModuleList(up));
  }

  torch::Tensor layer(size_t i, torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& ctx, int64_t F) {
    h = res[i](h, temb);
    h = tconv[i](h, F);
    if (cross) {
      h = attn[i](h, ctx);
      h = tattn[i](h, F);
    }
    return h;
  }
};

Unet3DImpl::Unet3DImpl(const Unet3DConfig& c) : cfg_(c) {
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t temb_dim = boc[0] * 4;
  conv_in = register_module("conv_in", conv2d(c.in_channels, boc[0], 3, 1, 1));
  time_embedding = register_module("time_embedding", TimestepEmbedding(boc[0], temb_dim, c.time_cond_proj_dim));
  transformer_in = register_module("transformer_in", TransformerTemporal(8, c.attention_head_dim, boc[0], c.norm_num_groups));

  down_blocks = register_module("down_blocks", nn::ModuleList());
  const auto downs = unet_common::down_plan(boc, c.layers_per_block);
  for (size_t i = 0; i < n; ++i) {
    const bool cross = c.down_block_types[i] == "CrossAttnDownBlock3D";
    auto b = std::make_shared<Block>(Block::Down, cross);
    for (auto [in, out] : downs[i].resnets) b->add_layer(c, in, out, 1.0, cross);
    if (downs[i].resample) b->down = Downsample2D(downs[i].out, c.downsample_padding);
    b->register_all();
    down_blocks->push_back(b);
    down_.push_back(b);
  }

  mid_ = std::make_shared<Block>(Block::Mid, true);
  {
    const int64_t ch = boc.back();
    mid_->res.push_back(ResnetBlock2D(ch, ch, temb_dim, c.norm_num_groups, c.norm_eps, c.mid_block_scale_factor));
    mid_->tconv.push_back(TemporalConvLayer(ch, c.norm_num_groups, 0.1));
    mid_->add_layer(c, ch, ch, c.mid_block_scale_factor, /*with_attention=*/true);
    mid_->register_all();
  }
  register_module("mid_block", mid_);

  up_blocks = register_module("up_blocks", nn::ModuleList());
  const auto ups = unet_common::up_plan(boc, c.layers_per_block);
  for (size_t i = 0; i < n; ++i) {
    const bool cross = c.up_block_types[i] == "CrossAttnUpBlock3D";
    auto b = std::make_shared<Block>(Block::Up, cross);
    for (auto [in, out] : ups[i].resnets) b->add_layer(c, in, out, 1.0, cross);
    if (ups[i].resample) b->up = Upsample2D(ups[i].out);
    b->register_all();
    up_blocks->push_back(b);
    up_.push_back(b);
  }

  conv_norm_out = register_module("conv_norm_out", group_norm(c.norm_num_groups, boc[0], c.norm_eps));
  conv_out = register_module("conv_out", conv2d(boc[0], c.out_channels, 3, 1, 1));
}

torch::Tensor Unet3DImpl::encode(const torch::Tensor& sample, const torch::Tensor& emb, const torch::Tensor& ctx, int64_t F,
                                 std::vector<torch::Tensor>* skips, std::vector<torch::Tensor>* features) {
  auto h = transformer_in(conv_in(unet_common::to_frames(sample)), F);
  h = unet_common::down_half(down_, h, emb, ctx, F, skips, features);
  h = mid_->res[0](h, emb);
  h = mid_->tconv[0](h, F);
  h = mid_->attn[0](h, ctx);
  h = mid_->tattn[0](h, F);
  h = mid_->res[1](h, emb);
  h = mid_->tconv[1](h, F);
  if (features) features->push_back(h);
  return h;
}

std::vector<torch::Tensor> Unet3DImpl::encoder_features(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                        const torch::Tensor& context) {
  auto [emb, ctx] = unet_common::embed_inputs("UNet3D", sample, cfg_.in_channels, context, cfg_.cross_attention_dim, timesteps,
                                              *time_embedding, cfg_.block_out_channels[0], conv_in->weight.scalar_type(),
                                              std::nullopt);
  std::vector<torch::Tensor> features;
  encode(sample, emb, ctx, sample.size(2), nullptr, &features);
  return features;
}

torch::Tensor Unet3DImpl::forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                  const torch::Tensor& context, const std::optional<torch::Tensor>& timestep_cond) {
  auto [emb, ctx] = unet_common::embed_inputs("UNet3D", sample, cfg_.in_channels, context, cfg_.cross_attention_dim, timesteps,
                                              *time_embedding, cfg_.block_out_channels[0], conv_in->weight.scalar_type(),
                                              timestep_cond);
  const int64_t B = sample.size(0), F = sample.size(2);
  std::vector<torch::Tensor> skips;
  auto h = encode(sample, emb, ctx, F, &skips, nullptr);
  h = unet_common::up_half(up_, h, skips, emb, ctx, F, unet_common::needs_upsample_size(sample, cfg_.block_out_channels.size()));
  return unet_common::to_video(conv_out(torch::silu(conv_norm_out(h))), B, F);
}

Unet3D load_unet3d(const fs::path& folder, torch::ScalarType dtype) {
  auto cfg = Unet3DConfig::from_json(read_config_json(folder), folder / "config.json");
  Unet3D unet(cfg);
  load_folder_weights(*unet, folder, dtype);
  return unet;
}

void save_unet3d(Unet3D& unet, const fs::path& folder, std::optional<torch::ScalarType> dtype) {
  save_video_unet(*unet, folder, dtype);
}

}  // namespace mcm::models
