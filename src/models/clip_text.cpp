// CLIPTextModel (transformers modeling_clip.py) with its state-dict names.
#include "models/clip_text.hpp"

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "models/weights.hpp"

namespace mcm::models {
namespace nn = torch::nn;
namespace stdfs = std::filesystem;

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& doc, const stdfs::path& file) {
  // A full CLIP config nests the text tower under "text_config".
  const nlohmann::json& d = doc.contains("text_config") ? doc.at("text_config") : doc;
  ConfigReader r(d, file);
  ClipTextConfig c;
  c.vocab_size = r.integer("vocab_size", c.vocab_size);
  c.hidden_size = r.integer("hidden_size", c.hidden_size);
  c.intermediate_size = r.integer("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = r.integer("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = r.integer("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = r.integer("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = r.string("hidden_act", c.hidden_act);
  c.layer_norm_eps = r.number("layer_norm_eps", c.layer_norm_eps);
  c.eos_token_id = r.integer("eos_token_id", c.eos_token_id);
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    r.fail("hidden_act", cat("\"", c.hidden_act, "\" is not supported (quick_gelu or gelu)"));
  for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "max_position_embeddings"})
    if (r.integer(k, 1) < 1) r.fail(k, "must be >= 1");
  if (c.hidden_size % c.num_attention_heads != 0)
    r.fail("num_attention_heads", cat(c.num_attention_heads, " does not divide hidden_size ", c.hidden_size));
  return c;
}

struct ClipTextModelImpl::Layer : nn::Module {
  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  int64_t heads;
  bool quick_gelu;

  explicit Layer(const ClipTextConfig& c) : heads(c.num_attention_heads), quick_gelu(c.hidden_act == "quick_gelu") {
    const int64_t d = c.hidden_size;
    auto attn = register_module("self_attn", std::make_shared<nn::Module>());
    k_proj = attn->register_module("k_proj", nn::Linear(d, d));
    v_proj = attn->register_module("v_proj", nn::Linear(d, d));
    q_proj = attn->register_module("q_proj", nn::Linear(d, d));
    out_proj = attn->register_module("out_proj", nn::Linear(d, d));
    auto ln = [&] { return nn::LayerNorm(nn::LayerNormOptions({d}).eps(c.layer_norm_eps)); };
    layer_norm1 = register_module("layer_norm1", ln());
    auto mlp = register_module("mlp", std::make_shared<nn::Module>());
    fc1 = mlp->register_module("fc1", nn::Linear(d, c.intermediate_size));
    fc2 = mlp->register_module("fc2", nn::Linear(c.intermediate_size, d));
    layer_norm2 = register_module("layer_norm2", ln());
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask) {
    const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
    auto h = layer_norm1(x);
    auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, D / heads}).transpose(1, 2); };
    auto a = at::scaled_dot_product_attention(split(q_proj(h)), split(k_proj(h)), split(v_proj(h)), mask);
    auto y = x + out_proj(a.transpose(1, 2).reshape({B, L, D}));
    h = fc1(layer_norm2(y));
    h = quick_gelu ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
    return y + fc2(h);
  }
};

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& c) : cfg_(c) {
  auto emb = register_module("embeddings", std::make_shared<nn::Module>());
  token_embedding = emb->register_module("token_embedding", nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding =
      emb->register_module("position_embedding", nn::Embedding(c.max_position_embeddings, c.hidden_size));
  auto encoder = register_module("encoder", std::make_shared<nn::Module>());
  auto list = encoder->register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<Layer>(c));
    list->push_back(layers_.back());
  }
  final_layer_norm = register_module("final_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& ids, const std::optional<torch::Tensor>& attention_mask) {
  require<DataError>(ids.dim() == 2 && ids.scalar_type() == torch::kInt64, "CLIP text: ids must be int64 [B, L], got ",
                     ids.sizes(), " ", ids.scalar_type());
  const int64_t L = ids.size(1);
  require<DataError>(L <= cfg_.max_position_embeddings, "CLIP text: ", L, " tokens exceed max_position_embeddings ",
                     cfg_.max_position_embeddings);
  require<DataError>(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < cfg_.vocab_size),
                     "CLIP text: token id out of range [0, ", cfg_.vocab_size, ")");
  auto positions = torch::arange(L, torch::TensorOptions().dtype(torch::kInt64).device(ids.device()));
  auto h = token_embedding(ids) + position_embedding(positions).unsqueeze(0);
  // Boolean mask, true = may attend: causal, and (when given) not a padding key.
  auto mask = torch::ones({L, L}, torch::TensorOptions().dtype(torch::kBool).device(ids.device())).tril();
  mask = mask.view({1, 1, L, L});
  if (attention_mask) mask = mask & attention_mask->to(torch::kBool).view({ids.size(0), 1, 1, L});
  for (auto& layer : layers_) h = layer->forward(h, mask);
  h = final_layer_norm(h);
  torch::Tensor eos_pos = cfg_.eos_token_id == 2 ? ids.to(torch::kInt32).argmax(-1)
                                                  : (ids == cfg_.eos_token_id).to(torch::kInt32).argmax(-1);
  auto pooled = h.index({torch::arange(h.size(0), eos_pos.options().dtype(torch::kInt64)), eos_pos.to(torch::kInt64)});
  return {h, pooled};
}

ClipTextModel load_clip_text_model(const stdfs::path& folder, torch::ScalarType dtype) {
  auto cfg = ClipTextConfig::from_json(read_config_json(folder), folder / "config.json");
  ClipTextModel model(cfg);
  load_folder_weights(*model, folder, dtype, [](const std::string& k) -> std::string {
    if (k == "text_model.embeddings.position_ids" || k == "embeddings.position_ids") return "";  // old non-persistent buffer
    return k.rfind("text_model.", 0) == 0 ? k.substr(11) : k;
  });
  return model;
}

ClipTextEncoder::ClipTextEncoder(const stdfs::path& model_dir, const stdfs::path& tokenizer_dir)
    : tokenizer_(tokenizer::ClipTokenizer::from_folder(tokenizer_dir, tokenizer::Flavor::Transformers)),
      model_(load_clip_text_model(model_dir)) {
  model_->eval();
  require<ConfigError>(tokenizer_.vocab_size() <= model_->config().vocab_size, "tokenizer ", tokenizer_dir, " has ",
                       tokenizer_.vocab_size(), " tokens but the text encoder ", model_dir, " embeds only ",
                       model_->config().vocab_size);
  require<ConfigError>(tokenizer_.context_length() <= model_->config().max_position_embeddings, "tokenizer ",
                       tokenizer_dir, " pads to ", tokenizer_.context_length(), " tokens but the text encoder has ",
                       model_->config().max_position_embeddings, " positions");
  hash_ = checksum::of_bytes(tokenizer_.content_hash() + "|" + folder_checksum(model_dir));
}

torch::Tensor ClipTextEncoder::encode(const std::vector<std::string>& captions) {
  torch::NoGradGuard ng;
  const int64_t L = tokenizer_.context_length();
  auto ids = torch::empty({static_cast<int64_t>(captions.size()), L}, torch::kInt64);
  for (size_t i = 0; i < captions.size(); ++i) {
    auto row = tokenizer_.tokenize(captions[i]);
    std::memcpy(ids[static_cast<int64_t>(i)].data_ptr<int64_t>(), row.data(), sizeof(int64_t) * static_cast<size_t>(L));
  }
  auto device = model_->parameters().front().device();
  return model_->forward(ids.to(device)).last_hidden_state.to(torch::kFloat32).cpu();
}

std::string ClipTextEncoder::name() const {
  return cat("clip(L=", max_length(), ",D=", dim(), ",layers=", model_->config().num_hidden_layers, ")");
}

}  // namespace mcm::models
