// LoRA attach / merge / PEFT exchange over the LoraHost layers of layers.hpp.
#include "models/lora.hpp"

#include <set>
#include <sstream>

#include "core/error.hpp"
#include "models/layers.hpp"

namespace mcm::models {
namespace stdfs = std::filesystem;

namespace {

/// Every LoRA-capable layer of `model` with its full name.
std::vector<std::pair<std::string, layers::LoraHost*>> hosts(torch::nn::Module& model) {
  std::vector<std::pair<std::string, layers::LoraHost*>> out;
  for (auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* h = dynamic_cast<layers::LoraHost*>(item.value().get())) out.emplace_back(item.key(), h);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> LoraConfig::mcm_targets() {
  return {"to_q",  "to_k",  "to_v",          "to_out.0",      "proj_in",
          "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
          "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv"};
}

bool lora_matches(const LoraConfig& cfg, const std::string& name) {
  std::stringstream ss(name);
  for (std::string part; std::getline(ss, part, '.');)
    for (const auto& ex : cfg.exclude)
      if (part == ex) return false;
  for (const auto& t : cfg.targets)
    if (name == t || ends_with(name, "." + t)) return true;
  return false;
}

std::vector<std::string> attach_lora(torch::nn::Module& model, const LoraConfig& cfg) {
  require<ConfigError>(cfg.rank >= 1, "lora.rank must be >= 1, got ", cfg.rank);
  require<ConfigError>(cfg.alpha > 0, "lora.alpha must be > 0, got ", cfg.alpha);
  require<ConfigError>(cfg.dropout >= 0 && cfg.dropout < 1, "lora.dropout must be in [0, 1), got ", cfg.dropout);
  std::vector<std::string> names;
  for (auto& [name, h] : hosts(model)) {
    if (!lora_matches(cfg, name)) continue;
    require<ConfigError>(!h->has_lora(), "LoRA already attached to ", name);
    h->add_lora(cfg.rank, cfg.alpha, cfg.dropout);
    names.push_back(name);
  }
  require<ConfigError>(!names.empty(), "lora.targets matched no Linear or Conv2d layer of the model");
  return names;
}

std::pair<std::vector<std::string>, int64_t> plan_lora(torch::nn::Module& model, const LoraConfig& cfg) {
  std::pair<std::vector<std::string>, int64_t> out{{}, 0};
  for (auto& [name, h] : hosts(model)) {
    if (!lora_matches(cfg, name)) continue;
    out.first.push_back(name);
    out.second += h->lora_parameters(cfg.rank);
  }
  return out;
}

std::vector<torch::Tensor> freeze_all_but_lora(torch::nn::Module& model) {
  std::vector<torch::Tensor> trainable;
  for (auto& p : model.named_parameters(true)) {
    const bool lora = p.key().find(".lora_A.") != std::string::npos || p.key().find(".lora_B.") != std::string::npos;
    p.value().set_requires_grad(lora);
    if (lora) trainable.push_back(p.value());
  }
  return trainable;
}

void merge_lora(torch::nn::Module& model) {
  for (auto& [name, h] : hosts(model))
    if (h->has_lora()) h->merge_lora();
}

void unmerge_lora(torch::nn::Module& model) {
  for (auto& [name, h] : hosts(model))
    if (h->has_lora()) h->unmerge_lora();
}

bool has_unmerged_lora(torch::nn::Module& model) {
  for (auto& [name, h] : hosts(model))
    if (h->has_lora() && !h->lora_merged()) return true;
  return false;
}

TensorMap without_lora(TensorMap tensors) {
  for (auto it = tensors.begin(); it != tensors.end();) {
    if (it->first.find(".lora_A.") != std::string::npos || it->first.find(".lora_B.") != std::string::npos)
      it = tensors.erase(it);
    else
      ++it;
  }
  return tensors;
}

TensorMap export_lora(torch::nn::Module& model, const std::string& prefix) {
  TensorMap out;
  auto params = model.named_parameters(true);
  for (auto& [name, h] : hosts(model)) {
    if (!h->has_lora()) continue;
    out[prefix + name + ".lora_A.weight"] = params[name + ".lora_A.weight"].detach().cpu().contiguous();
    out[prefix + name + ".lora_B.weight"] =
        (params[name + ".lora_B.weight"].detach().to(torch::kFloat32) * h->lora_scale())
            .to(params[name + ".lora_B.weight"].scalar_type()).cpu().contiguous();
  }
  require<Error>(!out.empty(), "export_lora: the model has no LoRA adapters");
  return out;
}

void import_lora(torch::nn::Module& model, const TensorMap& tensors, const std::string& source,
                 const std::string& prefix) {
  KeyMismatch bad;
  std::set<std::string> used;
  auto params = model.named_parameters(true);
  torch::NoGradGuard ng;
  for (auto& [name, h] : hosts(model)) {
    if (!h->has_lora()) continue;
    require<ConfigError>(!h->lora_merged(), source, ": cannot import LoRA into ", name,
                         ": its adapter is merged into the weight; unmerge_lora() first");
    for (const char* part : {"lora_A", "lora_B"}) {
      const std::string key = prefix + name + "." + part + ".weight";
      auto it = tensors.find(key);
      if (it == tensors.end()) {
        bad.missing.push_back(key);
        continue;
      }
      used.insert(key);
      auto& target = params[name + "." + part + ".weight"];
      if (it->second.sizes() != target.sizes()) {
        bad.add_misshaped(key, it->second.sizes(), target.sizes());
        continue;
      }
      auto v = it->second.to(torch::kFloat32);
      if (std::string(part) == "lora_B") v = v / h->lora_scale();
      target.copy_(v.to(target.device(), target.scalar_type()));
    }
  }
  for (const auto& [k, v] : tensors)
    if (!used.count(k)) bad.unexpected.push_back(k);
  bad.throw_if_any(cat(source, ": LoRA weights do not match the model's adapters"));
}

void save_lora(torch::nn::Module& model, const LoraConfig& cfg, const stdfs::path& folder) {
  stdfs::create_directories(folder);
  std::string targets;
  for (const auto& t : cfg.targets) targets += (targets.empty() ? "" : ",") + t;
  write_tensors(folder / "pytorch_lora_weights.safetensors", export_lora(model), std::nullopt,
                {{"format", "pt"},
                 {"mcm.lora.rank", std::to_string(cfg.rank)},
                 {"mcm.lora.alpha", std::to_string(cfg.alpha)},
                 {"mcm.lora.targets", targets},
                 {"mcm.lora.note", "lora_B includes alpha/rank; load with alpha = rank"}});
}

}  // namespace mcm::models
