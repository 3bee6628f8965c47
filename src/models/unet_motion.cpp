// UNetMotionModel (AnimateDiff) with diffusers' structure, names and forward (diffusers 0.42.1,
// models/unets/unet_motion_model.py).
#include "models/unet_motion.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/lora.hpp"
#include "models/unet_common.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace nn = torch::nn;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace layers;

namespace {
// One value for every block: an int, or a list of equal ints (refused otherwise).
int64_t uniform(const ConfigReader& r, const std::string& key, size_t n, int64_t fallback) {
  auto v = r.int_or_list(key, n, fallback);
  for (int64_t x : v)
    if (x != v.front()) r.fail(key, "per-block values are not supported (SD1.5 and the released adapters use one)");
  return v.front();
}
void require_null(const ConfigReader& r, const std::string& key, const std::string& why) {
  if (r.has(key)) r.fail(key, cat("must be null: ", why));
}
}  // namespace

void UnetMotionConfig::validate(const fs::path& file) const {
  auto fail = [&](const std::string& key, const std::string& why) {
    throw ConfigError(cat(file.string(), ": key ", key, ": ", why));
  };
  const size_t n = block_out_channels.size();
  if (n == 0) fail("block_out_channels", "empty");
  if (down_block_types.size() != n) fail("down_block_types", cat(down_block_types.size(), " blocks but ", n, " block_out_channels"));
  if (up_block_types.size() != n) fail("up_block_types", cat(up_block_types.size(), " blocks but ", n, " block_out_channels"));
  for (const auto& t : down_block_types)
    if (t != "CrossAttnDownBlockMotion" && t != "DownBlockMotion") fail("down_block_types", cat("unknown block type ", t));
  for (const auto& t : up_block_types)
    if (t != "CrossAttnUpBlockMotion" && t != "UpBlockMotion") fail("up_block_types", cat("unknown block type ", t));
  for (auto [v, k] : {std::pair{in_channels, "in_channels"}, {out_channels, "out_channels"}, {layers_per_block, "layers_per_block"},
                      {norm_num_groups, "norm_num_groups"}, {cross_attention_dim, "cross_attention_dim"},
                      {num_attention_heads, "num_attention_heads"}, {motion_num_attention_heads, "motion_num_attention_heads"},
                      {motion_max_seq_length, "motion_max_seq_length"},
                      {transformer_layers_per_block, "transformer_layers_per_block"},
                      {temporal_transformer_layers_per_block, "temporal_transformer_layers_per_block"},
                      {temporal_transformer_layers_per_mid_block, "temporal_transformer_layers_per_mid_block"}})
    if (v < 1) fail(k, "must be >= 1");
  for (int64_t ch : block_out_channels) {
    if (ch % norm_num_groups != 0) fail("block_out_channels", cat(ch, " is not a multiple of norm_num_groups ", norm_num_groups));
    if (ch % num_attention_heads != 0) fail("num_attention_heads", cat(num_attention_heads, " heads do not divide width ", ch));
    if (ch % motion_num_attention_heads != 0)
      fail("motion_num_attention_heads", cat(motion_num_attention_heads, " heads do not divide width ", ch));
  }
}

UnetMotionConfig UnetMotionConfig::from_json(const json& doc, const fs::path& file) {
  ConfigReader r(doc, file);
  UnetMotionConfig c;
  if (r.has("_class_name") && r.string("_class_name") != "UNetMotionModel")
    r.fail("_class_name", cat("expected UNetMotionModel, got ", r.string("_class_name")));
  c.in_channels = r.integer("in_channels", c.in_channels);
  c.out_channels = r.integer("out_channels", c.out_channels);
  c.down_block_types = r.strings("down_block_types", c.down_block_types);
  c.up_block_types = r.strings("up_block_types", c.up_block_types);
  c.block_out_channels = r.integers("block_out_channels", c.block_out_channels);
  const size_t n = c.block_out_channels.size();
  c.layers_per_block = uniform(r, "layers_per_block", n, c.layers_per_block);
  c.downsample_padding = r.integer("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = r.number("mid_block_scale_factor", c.mid_block_scale_factor);
  if (r.string("act_fn", "silu") != "silu") r.fail("act_fn", "only \"silu\" is supported");
  c.norm_num_groups = r.integer("norm_num_groups", c.norm_num_groups);
  c.norm_eps = r.number("norm_eps", c.norm_eps);
  c.cross_attention_dim = r.integer("cross_attention_dim", c.cross_attention_dim);
  c.num_attention_heads = uniform(r, "num_attention_heads", n, c.num_attention_heads);
  c.use_linear_projection = r.boolean("use_linear_projection", c.use_linear_projection);
  c.transformer_layers_per_block = uniform(r, "transformer_layers_per_block", n, 1);
  c.temporal_transformer_layers_per_block = uniform(r, "temporal_transformer_layers_per_block", n, 1);
  c.temporal_transformer_layers_per_mid_block = r.integer("temporal_transformer_layers_per_mid_block", 1);
  if (r.has("transformer_layers_per_mid_block") && r.integer("transformer_layers_per_mid_block") != c.transformer_layers_per_block)
    r.fail("transformer_layers_per_mid_block", "must equal transformer_layers_per_block (or be null)");
  for (const char* k : {"reverse_transformer_layers_per_block", "reverse_temporal_transformer_layers_per_block"})
    require_null(r, k, "per-block reversed layer counts are not supported");
  if (r.integer("mid_block_layers", 1) != 1) r.fail("mid_block_layers", "only 1 is supported (diffusers' default)");
  c.motion_num_attention_heads = uniform(r, "motion_num_attention_heads", n, c.motion_num_attention_heads);
  c.motion_max_seq_length = r.integer("motion_max_seq_length", c.motion_max_seq_length);
  c.use_motion_mid_block = r.boolean("use_motion_mid_block", c.use_motion_mid_block);
  for (const char* k : {"encoder_hid_dim", "encoder_hid_dim_type", "addition_embed_type"})
    require_null(r, k, "SDXL-style added embeddings are not supported");
  c.time_cond_proj_dim = r.integer("time_cond_proj_dim", 0);
  c.sample_size = r.integer("sample_size", c.sample_size);
  c.validate(file);
  return c;
}

UnetMotionConfig UnetMotionConfig::from_unet2d(const json& unet, const fs::path& unet_file, const json& adapter,
                                               const fs::path& adapter_file) {
  ConfigReader u(unet, unet_file), a(adapter, adapter_file);
  if (u.has("_class_name") && u.string("_class_name") != "UNet2DConditionModel")
    u.fail("_class_name", cat("expected UNet2DConditionModel, got ", u.string("_class_name")));
  if (a.has("_class_name") && a.string("_class_name") != "MotionAdapter")
    a.fail("_class_name", cat("expected MotionAdapter, got ", a.string("_class_name")));
  UnetMotionConfig c;
  c.in_channels = u.integer("in_channels", 4);
  c.out_channels = u.integer("out_channels", 4);
  c.block_out_channels = u.integers("block_out_channels", c.block_out_channels);
  const size_t n = c.block_out_channels.size();
  // from_unet2d: "CrossAttn" blocks become CrossAttn*BlockMotion, the others *BlockMotion.
  const auto downs = u.strings("down_block_types", {{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}});
  const auto ups = u.strings("up_block_types", {{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}});
  c.down_block_types.clear();
  c.up_block_types.clear();
  for (const auto& t : downs) {
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D") u.fail("down_block_types", cat("unsupported block type ", t));
    c.down_block_types.push_back(t.find("CrossAttn") != std::string::npos ? "CrossAttnDownBlockMotion" : "DownBlockMotion");
  }
  for (const auto& t : ups) {
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D") u.fail("up_block_types", cat("unsupported block type ", t));
    c.up_block_types.push_back(t.find("CrossAttn") != std::string::npos ? "CrossAttnUpBlockMotion" : "UpBlockMotion");
  }
  c.layers_per_block = uniform(u, "layers_per_block", n, 2);
  c.downsample_padding = u.integer("downsample_padding", 1);
  c.mid_block_scale_factor = u.number("mid_block_scale_factor", 1.0);
  if (u.string("act_fn", "silu") != "silu") u.fail("act_fn", "only \"silu\" is supported");
  // UNetMotionModel's time projection is fixed at flip_sin_to_cos=True, shift 0 (SD1.5's): a UNet
  // trained otherwise would be silently changed by the conversion, so it is refused.
  if (!u.boolean("flip_sin_to_cos", true)) u.fail("flip_sin_to_cos", "UNetMotionModel fixes it to true");
  if (u.number("freq_shift", 0.0) != 0.0) u.fail("freq_shift", "UNetMotionModel fixes it to 0");
  for (const char* k : {"class_embed_type", "addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type"})
    require_null(u, k, "class and added embeddings are not supported");
  if (u.boolean("center_input_sample", false)) u.fail("center_input_sample", "must be false");
  c.norm_num_groups = u.integer("norm_num_groups", 32);
  c.norm_eps = u.number("norm_eps", 1e-5);
  c.cross_attention_dim = u.integer("cross_attention_dim", 1280);
  // SD1.5's "attention_head_dim" (8) is its head count; from_unet2d passes it on as such.
  c.num_attention_heads = u.has("num_attention_heads") ? uniform(u, "num_attention_heads", n, 8)
                                                       : uniform(u, "attention_head_dim", n, 8);
  c.use_linear_projection = u.boolean("use_linear_projection", false);
  c.transformer_layers_per_block = uniform(u, "transformer_layers_per_block", n, 1);
  c.time_cond_proj_dim = u.integer("time_cond_proj_dim", 0);
  c.sample_size = u.integer("sample_size", 64);

  const auto a_boc = a.integers("block_out_channels", {{320, 640, 1280, 1280}});
  if (a_boc != c.block_out_channels)
    a.fail("block_out_channels", cat("the adapter's widths differ from the UNet's (", unet_file.string(), ")"));
  const int64_t motion_layers = uniform(a, "motion_layers_per_block", n, 2);
  if (motion_layers != c.layers_per_block)
    a.fail("motion_layers_per_block", cat(motion_layers, " but the UNet has layers_per_block ", c.layers_per_block, " (",
                                          unet_file.string(), ")"));
  c.motion_num_attention_heads = uniform(a, "motion_num_attention_heads", n, 8);
  c.motion_max_seq_length = a.integer("motion_max_seq_length", 32);
  c.use_motion_mid_block = a.boolean("use_motion_mid_block", true);
  c.temporal_transformer_layers_per_block = uniform(a, "motion_transformer_layers_per_block", n, 1);
  c.temporal_transformer_layers_per_mid_block = a.integer("motion_transformer_layers_per_mid_block", 1);
  require_null(a, "conv_in_channels", "PIA-style adapters with their own conv_in are not supported");
  c.validate(adapter_file);
  return c;
}

UnetMotionConfig UnetMotionConfig::sd15_v152() {
  static const json unet = {{"_class_name", "UNet2DConditionModel"}, {"act_fn", "silu"}, {"attention_head_dim", 8},
                            {"block_out_channels", {320, 640, 1280, 1280}}, {"center_input_sample", false},
                            {"cross_attention_dim", 768},
                            {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
                            {"downsample_padding", 1}, {"flip_sin_to_cos", true}, {"freq_shift", 0}, {"in_channels", 4},
                            {"layers_per_block", 2}, {"mid_block_scale_factor", 1}, {"norm_eps", 1e-5}, {"norm_num_groups", 32},
                            {"out_channels", 4}, {"sample_size", 64},
                            {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}}};
  static const json adapter = {{"_class_name", "MotionAdapter"}, {"block_out_channels", {320, 640, 1280, 1280}},
                               {"motion_layers_per_block", 2}, {"motion_max_seq_length", 32},
                               {"motion_mid_block_layers_per_block", 1}, {"motion_norm_num_groups", 32},
                               {"motion_num_attention_heads", 8}, {"use_motion_mid_block", true}};
  return from_unet2d(unet, "stable-diffusion-v1-5/unet/config.json", adapter, "animatediff-motion-adapter-v1-5-2/config.json");
}

json UnetMotionConfig::to_json() const {
  return {{"_class_name", "UNetMotionModel"},
          {"_diffusers_version", "0.42.1"},
          {"act_fn", "silu"},
          {"block_out_channels", block_out_channels},
          {"cross_attention_dim", cross_attention_dim},
          {"down_block_types", down_block_types},
          {"downsample_padding", downsample_padding},
          {"in_channels", in_channels},
          {"layers_per_block", layers_per_block},
          {"mid_block_layers", 1},
          {"mid_block_scale_factor", mid_block_scale_factor},
          {"motion_max_seq_length", motion_max_seq_length},
          {"motion_num_attention_heads", motion_num_attention_heads},
          {"norm_eps", norm_eps},
          {"norm_num_groups", norm_num_groups},
          {"num_attention_heads", num_attention_heads},
          {"out_channels", out_channels},
          {"sample_size", sample_size},
          {"temporal_transformer_layers_per_block", temporal_transformer_layers_per_block},
          {"temporal_transformer_layers_per_mid_block", temporal_transformer_layers_per_mid_block},
          {"time_cond_proj_dim", time_cond_proj_dim > 0 ? json(time_cond_proj_dim) : json(nullptr)},
          {"transformer_layers_per_block", transformer_layers_per_block},
          {"up_block_types", up_block_types},
          {"use_linear_projection", use_linear_projection},
          {"use_motion_mid_block", use_motion_mid_block}};
}

/// One down, mid or up block: attentions (cross blocks), resnets, motion_modules, and a
/// downsampler or upsampler, registered in diffusers' order.
struct UnetMotionImpl::Block : nn::Module {
  bool cross;
  std::vector<ResnetBlock2D> res;
  std::vector<Transformer2D> attn;
  std::vector<TransformerTemporal> motion;
  Downsample2D down{nullptr};
  Upsample2D up{nullptr};

  explicit Block(bool cross_attention) : cross(cross_attention) {}

  void add_resnet(const UnetMotionConfig& c, int64_t in, int64_t out, double scale) {
    res.push_back(ResnetBlock2D(in, out, c.block_out_channels[0] * 4, c.norm_num_groups, c.norm_eps, scale));
  }
  void add_attention(const UnetMotionConfig& c, int64_t ch) {
    attn.push_back(Transformer2D(c.num_attention_heads, ch / c.num_attention_heads, ch, c.norm_num_groups,
                                 c.cross_attention_dim, c.use_linear_projection, c.transformer_layers_per_block));
  }
  void add_motion(const UnetMotionConfig& c, int64_t ch, int64_t layers) {
    motion.push_back(TransformerTemporal(c.motion_num_attention_heads, ch / c.motion_num_attention_heads, ch,
                                         c.norm_num_groups, c.motion_max_seq_length, layers));
  }
  // A down or up block's layer: resnet, attention (cross blocks), motion module.
  void add_layer(const UnetMotionConfig& c, int64_t in, int64_t out) {
    add_resnet(c, in, out, 1.0);
    if (cross) add_attention(c, out);
    add_motion(c, out, c.temporal_transformer_layers_per_block);
  }
  void register_all() {
    unet_common::register_list(*this, "attentions", attn);
    unet_common::register_list(*this, "resnets", res);
    unet_common::register_list(*this, "motion_modules", motion);
    if (!down.is_empty()) register_module("downsamplers", nn::ModuleList(down));
    if (!up.is_empty()) register_module("upsamplers", nn::ModuleList(up));
  }
  // Down and up blocks: resnet -> attention -> motion module, per layer.
  torch::Tensor layer(size_t i, torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& ctx, int64_t F) {
    h = res[i](h, temb);
    if (cross) h = attn[i](h, ctx);
    return motion[i](h, F);
  }
};

UnetMotionImpl::UnetMotionImpl(const UnetMotionConfig& c) : cfg_(c) {
  c.validate("UNetMotionModel config");
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t temb_dim = boc[0] * 4;
  conv_in = register_module("conv_in", conv2d(c.in_channels, boc[0], 3, 1, 1));
  time_embedding = register_module("time_embedding", TimestepEmbedding(boc[0], temb_dim, c.time_cond_proj_dim));

  down_blocks = register_module("down_blocks", nn::ModuleList());
  const auto downs = unet_common::down_plan(boc, c.layers_per_block);
  for (size_t i = 0; i < n; ++i) {
    auto b = std::make_shared<Block>(c.down_block_types[i] == "CrossAttnDownBlockMotion");
    for (auto [in, out] : downs[i].resnets) b->add_layer(c, in, out);
    if (downs[i].resample) b->down = Downsample2D(downs[i].out, c.downsample_padding);
    b->register_all();
    down_blocks->push_back(b);
    down_.push_back(b);
  }

  mid_ = std::make_shared<Block>(true);
  {
    const int64_t ch = boc.back();
    mid_->add_resnet(c, ch, ch, c.mid_block_scale_factor);
    mid_->add_attention(c, ch);
    mid_->add_resnet(c, ch, ch, c.mid_block_scale_factor);
    if (c.use_motion_mid_block) mid_->add_motion(c, ch, c.temporal_transformer_layers_per_mid_block);
    mid_->register_all();
  }
  register_module("mid_block", mid_);

  up_blocks = register_module("up_blocks", nn::ModuleList());
  const auto ups = unet_common::up_plan(boc, c.layers_per_block);
  for (size_t i = 0; i < n; ++i) {
    auto b = std::make_shared<Block>(c.up_block_types[i] == "CrossAttnUpBlockMotion");
    for (auto [in, out] : ups[i].resnets) b->add_layer(c, in, out);
    if (ups[i].resample) b->up = Upsample2D(ups[i].out);
    b->register_all();
    up_blocks->push_back(b);
    up_.push_back(b);
  }

  conv_norm_out = register_module("conv_norm_out", group_norm(c.norm_num_groups, boc[0], c.norm_eps));
  conv_out = register_module("conv_out", conv2d(boc[0], c.out_channels, 3, 1, 1));
}

std::pair<torch::Tensor, torch::Tensor> UnetMotionImpl::embed(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                               const torch::Tensor& context,
                                                               const std::optional<torch::Tensor>& timestep_cond) {
  require<DataError>(sample.dim() != 5 || sample.size(2) <= cfg_.motion_max_seq_length, "UNetMotion: ", sample.size(2),
                     " frames, but the motion modules' positions cover ", cfg_.motion_max_seq_length,
                     " (motion_max_seq_length)");
  return unet_common::embed_inputs("UNetMotion", sample, cfg_.in_channels, context, cfg_.cross_attention_dim, timesteps,
                                   *time_embedding, cfg_.block_out_channels[0], conv_in->weight.scalar_type(), timestep_cond);
}

torch::Tensor UnetMotionImpl::encode(const torch::Tensor& sample, const torch::Tensor& emb, const torch::Tensor& ctx,
                                     int64_t F, std::vector<torch::Tensor>* skips, std::vector<torch::Tensor>* features) {
  auto h = unet_common::down_half(down_, conv_in(unet_common::to_frames(sample)), emb, ctx, F, skips, features);
  // Mid block: resnet 0, then attention, motion module, resnet 1 (not the down/up order).
  h = mid_->res[0](h, emb);
  h = mid_->attn[0](h, ctx);
  if (!mid_->motion.empty()) h = mid_->motion[0](h, F);
  h = mid_->res[1](h, emb);
  if (features) features->push_back(h);
  return h;
}

std::vector<torch::Tensor> UnetMotionImpl::encoder_features(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                            const torch::Tensor& context) {
  auto [emb, ctx] = embed(sample, timesteps, context, std::nullopt);
  std::vector<torch::Tensor> features;
  encode(sample, emb, ctx, sample.size(2), nullptr, &features);
  return features;
}

torch::Tensor UnetMotionImpl::forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                      const torch::Tensor& context, const std::optional<torch::Tensor>& timestep_cond) {
  auto [emb, ctx] = embed(sample, timesteps, context, timestep_cond);
  const int64_t B = sample.size(0), F = sample.size(2);
  std::vector<torch::Tensor> skips;
  auto h = encode(sample, emb, ctx, F, &skips, nullptr);
  h = unet_common::up_half(up_, h, skips, emb, ctx, F, unet_common::needs_upsample_size(sample, cfg_.block_out_channels.size()));
  return unet_common::to_video(conv_out(torch::silu(conv_norm_out(h))), B, F);
}

UnetMotion load_unet_motion(const fs::path& folder, torch::ScalarType dtype) {
  UnetMotion unet(UnetMotionConfig::from_json(read_config_json(folder), folder / "config.json"));
  load_folder_weights(*unet, folder, dtype);
  return unet;
}

UnetMotion load_unet_motion(const fs::path& unet_folder, const fs::path& adapter_folder, torch::ScalarType dtype) {
  UnetMotion unet(UnetMotionConfig::from_unet2d(read_config_json(unet_folder), unet_folder / "config.json",
                                                read_config_json(adapter_folder), adapter_folder / "config.json"));
  unet->to(dtype);
  TensorMap all = read_tensors(find_weights(unet_folder));
  for (auto& [k, v] : read_tensors(find_weights(adapter_folder))) {
    require<DataError>(all.emplace(k, v).second, "motion adapter ", adapter_folder.string(), ": key ", k,
                       " is also in the UNet's weights (", unet_folder.string(), ")");
  }
  load_strict(*unet, all, cat(unet_folder.string(), " + ", adapter_folder.string()));
  unet->eval();
  return unet;
}

void save_unet_motion(UnetMotion& unet, const fs::path& folder, std::optional<torch::ScalarType> dtype) {
  save_video_unet(*unet, folder, dtype);
}

}  // namespace mcm::models
