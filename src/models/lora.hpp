// LoRA on the UNet: attach adapters to Linear/Conv2d layers chosen by module-name suffix (with
// exclusions), train only them, merge/unmerge, and exchange them in PEFT/diffusers form.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "models/weights.hpp"

namespace mcm::models {

struct LoraConfig {
  int64_t rank = 64;
  double alpha = 64;
  double dropout = 0.0;
  /// A module is a target when its name equals one of these or ends with "." + one of them.
  std::vector<std::string> targets = mcm_targets();
  /// A module is skipped when any dot-separated component of its name is one of these.
  std::vector<std::string> exclude{"temp_convs"};

  /// MCM's list (MCM.md): attention projections, transformer in/out projections, GEGLU and
  /// output feed-forward, ResNet convs, shortcut and time projection, down/up-sampler convs.
  static std::vector<std::string> mcm_targets();
};

/// True when `name` is a LoRA target under `cfg` (suffix match, exclusions).
bool lora_matches(const LoraConfig& cfg, const std::string& name);

/// Attaches a fresh adapter (B = 0: the output is unchanged) to every matching Linear/Conv2d
/// and returns their names. ConfigError when nothing matches or an adapter is already there.
std::vector<std::string> attach_lora(torch::nn::Module& model, const LoraConfig& cfg);

/// What attach_lora would attach, without attaching (works on a model built on the meta device):
/// the adapted layers' names and the adapters' parameter count.
std::pair<std::vector<std::string>, int64_t> plan_lora(torch::nn::Module& model, const LoraConfig& cfg);

/// Sets requires_grad on the adapters only; returns the adapter parameters.
std::vector<torch::Tensor> freeze_all_but_lora(torch::nn::Module& model);

void merge_lora(torch::nn::Module& model);
void unmerge_lora(torch::nn::Module& model);
/// True when some adapter is attached and not merged.
bool has_unmerged_lora(torch::nn::Module& model);
/// `tensors` without the adapter tensors (".lora_A." / ".lora_B." keys).
TensorMap without_lora(TensorMap tensors);

/// Adapters in PEFT/diffusers form: "<prefix><module>.lora_A.weight" and ".lora_B.weight", with
/// the alpha/rank scale folded into lora_B, so diffusers' default (alpha = rank) reproduces them.
TensorMap export_lora(torch::nn::Module& model, const std::string& prefix = "unet.");

/// Loads adapters exported by export_lora (or by diffusers/PEFT with alpha = rank) into a model
/// whose adapters are attached and not merged (a merged weight holds the old product: refused);
/// every adapter must be present with matching shapes (DataError listing the names otherwise).
void import_lora(torch::nn::Module& model, const TensorMap& tensors, const std::string& source,
                 const std::string& prefix = "unet.");

/// Writes `pytorch_lora_weights.safetensors` (diffusers' file name) into `folder`.
void save_lora(torch::nn::Module& model, const LoraConfig& cfg, const std::filesystem::path& folder);

}  // namespace mcm::models
