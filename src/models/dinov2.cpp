// DINOv2 with transformers' names and forward (see dinov2.hpp).
#include "models/dinov2.hpp"

#include <cmath>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace nn = torch::nn;
using json = nlohmann::json;

Dinov2Config Dinov2Config::from_json(const json& doc, const std::filesystem::path& file) {
  Dinov2Config c;
  auto get = [&](const char* key, auto& v) {
    if (!doc.contains(key) || doc[key].is_null()) return;
    try {
      doc.at(key).get_to(v);
    } catch (const json::exception& e) {
      throw ConfigError(cat(file.string(), ": ", key, ": ", e.what()));
    }
  };
  get("hidden_size", c.hidden_size);
  get("num_hidden_layers", c.num_hidden_layers);
  get("num_attention_heads", c.num_attention_heads);
  get("mlp_ratio", c.mlp_ratio);
  get("layer_norm_eps", c.layer_norm_eps);
  get("image_size", c.image_size);
  get("patch_size", c.patch_size);
  get("num_channels", c.num_channels);
  get("qkv_bias", c.qkv_bias);
  get("layerscale_value", c.layerscale_value);
  get("use_mask_token", c.use_mask_token);
  const std::string act = doc.value("hidden_act", std::string("gelu"));
  require<ConfigError>(act == "gelu", file.string(), ": hidden_act \"", act, "\" is not supported (gelu)");
  require<ConfigError>(!doc.value("use_swiglu_ffn", false), file.string(),
                       ": use_swiglu_ffn = true (ViT-g) is not supported; use ViT-S/B/L");
  require<ConfigError>(c.hidden_size > 0 && c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
                       file.string(), ": hidden_size ", c.hidden_size, " must be a positive multiple of num_attention_heads ",
                       c.num_attention_heads);
  require<ConfigError>(c.num_hidden_layers > 0 && c.patch_size > 0 && c.image_size >= c.patch_size, file.string(),
                       ": num_hidden_layers, patch_size and image_size must be positive (image_size >= patch_size)");
  return c;
}

struct Dinov2Impl::Layer : nn::Module {
  // transformers: norm1, attention.attention.{query,key,value}, attention.output.dense,
  // layer_scale1.lambda1, norm2, mlp.{fc1,fc2}, layer_scale2.lambda1.
  struct SelfAttention : nn::Module {
    nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  };
  struct SelfOutput : nn::Module {
    nn::Linear dense{nullptr};
  };
  struct Attention : nn::Module {
    std::shared_ptr<SelfAttention> attention;
    std::shared_ptr<SelfOutput> output;
  };
  struct Scale : nn::Module {
    torch::Tensor lambda1;
  };
  struct Mlp : nn::Module {
    nn::Linear fc1{nullptr}, fc2{nullptr};
  };
  nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  std::shared_ptr<Attention> attention;
  std::shared_ptr<Scale> layer_scale1, layer_scale2;
  std::shared_ptr<Mlp> mlp;
  int64_t heads;

  explicit Layer(const Dinov2Config& c) : heads(c.num_attention_heads) {
    const int64_t d = c.hidden_size, hidden = static_cast<int64_t>(static_cast<double>(d) * c.mlp_ratio);
    auto ln = nn::LayerNormOptions({d}).eps(c.layer_norm_eps);
    norm1 = register_module("norm1", nn::LayerNorm(ln));
    attention = register_module("attention", std::make_shared<Attention>());
    attention->attention = attention->register_module("attention", std::make_shared<SelfAttention>());
    auto& sa = *attention->attention;
    sa.query = sa.register_module("query", nn::Linear(nn::LinearOptions(d, d).bias(c.qkv_bias)));
    sa.key = sa.register_module("key", nn::Linear(nn::LinearOptions(d, d).bias(c.qkv_bias)));
    sa.value = sa.register_module("value", nn::Linear(nn::LinearOptions(d, d).bias(c.qkv_bias)));
    attention->output = attention->register_module("output", std::make_shared<SelfOutput>());
    attention->output->dense = attention->output->register_module("dense", nn::Linear(d, d));
    layer_scale1 = register_module("layer_scale1", std::make_shared<Scale>());
    layer_scale1->lambda1 = layer_scale1->register_parameter("lambda1", torch::full({d}, c.layerscale_value));
    norm2 = register_module("norm2", nn::LayerNorm(ln));
    mlp = register_module("mlp", std::make_shared<Mlp>());
    mlp->fc1 = mlp->register_module("fc1", nn::Linear(d, hidden));
    mlp->fc2 = mlp->register_module("fc2", nn::Linear(hidden, d));
    layer_scale2 = register_module("layer_scale2", std::make_shared<Scale>());
    layer_scale2->lambda1 = layer_scale2->register_parameter("lambda1", torch::full({d}, c.layerscale_value));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t N = x.size(0), L = x.size(1), D = x.size(2), hd = D / heads;
    auto h = norm1(x);
    auto& sa = *attention->attention;
    auto split = [&](const torch::Tensor& t) { return t.view({N, L, heads, hd}).transpose(1, 2); };
    auto q = split(sa.query(h)), k = split(sa.key(h)), v = split(sa.value(h));
    auto a = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(hd))), -1);
    auto o = torch::matmul(a, v).transpose(1, 2).reshape({N, L, D});
    auto y = x + attention->output->dense(o) * layer_scale1->lambda1;
    return y + mlp->fc2(torch::gelu(mlp->fc1(norm2(y)))) * layer_scale2->lambda1;
  }
};

Dinov2Impl::Dinov2Impl(const Dinov2Config& cfg) : cfg_(cfg) {
  const int64_t d = cfg.hidden_size, grid = cfg.image_size / cfg.patch_size;
  auto emb = register_module("embeddings", std::make_shared<nn::Module>());
  cls_token = emb->register_parameter("cls_token", torch::zeros({1, 1, d}));
  if (cfg.use_mask_token) mask_token = emb->register_parameter("mask_token", torch::zeros({1, d}));
  position_embeddings = emb->register_parameter("position_embeddings", torch::randn({1, grid * grid + 1, d}) * 0.02);
  auto patch = emb->register_module("patch_embeddings", std::make_shared<nn::Module>());
  projection = patch->register_module(
      "projection", nn::Conv2d(nn::Conv2dOptions(cfg.num_channels, d, cfg.patch_size).stride(cfg.patch_size)));
  auto enc = register_module("encoder", std::make_shared<nn::Module>());
  auto list = enc->register_module("layer", nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    auto l = std::make_shared<Layer>(cfg);
    list->push_back(l);
    layers_.push_back(l);
  }
  layernorm = register_module("layernorm", nn::LayerNorm(nn::LayerNormOptions({d}).eps(cfg.layer_norm_eps)));
}

torch::Tensor Dinov2Impl::position_embeddings_for(int64_t gh, int64_t gw) const {
  const int64_t positions = position_embeddings.size(1) - 1;
  if (gh * gw == positions && gh == gw) return position_embeddings;
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(positions))));
  const int64_t d = position_embeddings.size(2);
  auto patch = position_embeddings.slice(1, 1).reshape({1, side, side, d}).permute({0, 3, 1, 2});
  // transformers interpolates in float32 (bicubic, align_corners = false) and casts back.
  auto resized = torch::nn::functional::interpolate(
      patch.to(torch::kFloat32),
      torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{gh, gw}).mode(torch::kBicubic).align_corners(false));
  resized = resized.to(position_embeddings.scalar_type()).permute({0, 2, 3, 1}).reshape({1, gh * gw, d});
  return torch::cat({position_embeddings.slice(1, 0, 1), resized}, 1);
}

std::vector<torch::Tensor> Dinov2Impl::forward(const torch::Tensor& pixels, const std::vector<int64_t>& layers) {
  require<DataError>(pixels.dim() == 4 && pixels.size(1) == cfg_.num_channels && pixels.size(2) % cfg_.patch_size == 0 &&
                         pixels.size(3) % cfg_.patch_size == 0,
                     "DINOv2: expected pixels [N, ", cfg_.num_channels, ", H, W] with H and W multiples of ",
                     cfg_.patch_size, ", got ", pixels.sizes());
  for (size_t i = 0; i < layers.size(); ++i)
    require<ConfigError>(layers[i] >= 0 && layers[i] < cfg_.num_hidden_layers && (i == 0 || layers[i] > layers[i - 1]),
                         "DINOv2: feature layers must ascend within 0..", cfg_.num_hidden_layers - 1);
  const int64_t N = pixels.size(0), gh = pixels.size(2) / cfg_.patch_size, gw = pixels.size(3) / cfg_.patch_size;
  auto x = projection(pixels.to(projection->weight.scalar_type())).flatten(2).transpose(1, 2);
  x = torch::cat({cls_token.expand({N, 1, x.size(2)}), x}, 1) + position_embeddings_for(gh, gw);
  std::vector<torch::Tensor> out;
  size_t next = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(layers_.size()) && next < layers.size(); ++i) {
    x = layers_[static_cast<size_t>(i)]->forward(x);
    if (i == layers[next]) {
      out.push_back(layernorm(x));
      ++next;
    }
  }
  return out;
}

Dinov2 load_dinov2(const std::filesystem::path& folder, torch::ScalarType dtype) {
  const auto file = folder / "config.json";
  json doc;
  try {
    doc = json::parse(fs::read_text(file));
  } catch (const json::exception& e) {
    throw ConfigError(cat(file.string(), ": ", e.what()));
  }
  Dinov2 model(Dinov2Config::from_json(doc, file));
  load_folder_weights(*model, folder, dtype);
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

std::vector<int64_t> dinov2_feature_layers(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t j = 1; j <= 4; ++j) {
    const int64_t l = std::max<int64_t>(0, static_cast<int64_t>(std::llround(static_cast<double>(n) * j / 4.0)) - 1);
    if (out.empty() || l > out.back()) out.push_back(l);
  }
  return out;
}

}  // namespace mcm::models
