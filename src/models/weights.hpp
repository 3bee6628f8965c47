// Weights by reference names: read a diffusers/transformers component folder (config.json plus
// safetensors, single file or sharded index) into torch tensors, load them strictly into a module
// whose parameter names are the reference names, and write a module back in the same layout.
// Include only from torch translation units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace mcm::models {

using TensorMap = std::map<std::string, torch::Tensor>;

/// `folder/config.json` parsed; IoError naming the file when absent or not JSON.
nlohmann::json read_config_json(const std::filesystem::path& folder);

/// The weights file of a component folder: diffusion_pytorch_model.safetensors, model.safetensors,
/// or their `.safetensors.index.json` (sharded); then the fp16 variants of those (`.fp16.safetensors`, `.safetensors.index.fp16.json`; folders
/// downloaded with variant="fp16"). IoError listing what was looked for.
std::filesystem::path find_weights(const std::filesystem::path& folder);

/// Checksum of everything in a component folder that decides its outputs: config.json and every
/// weights file (all shards of an index). For the manifest's reuse identity.
std::string folder_checksum(const std::filesystem::path& folder);

/// Every tensor of a checkpoint (file or index), copied into CPU torch tensors of the file's dtype.
TensorMap read_tensors(const std::filesystem::path& file_or_index);

/// Keys that did not match between a file and a model, for one error listing all of them.
struct KeyMismatch {
  std::vector<std::string> missing, unexpected, misshaped;  ///< misshaped: "key (file [..], model [..])"
  void add_misshaped(const std::string& key, c10::IntArrayRef file, c10::IntArrayRef model);
  /// DataError "<what>; N missing: a, b; N unexpected: ...; N mis-shaped: ..." unless all empty.
  void throw_if_any(const std::string& what) const;
};

/// Strict load: the keys of `tensors` must be exactly the module's parameters and persistent
/// buffers, with equal shapes. Missing, unexpected and mis-shaped keys are all listed, by name, in
/// one DataError naming `source`. Floating values convert to each parameter's dtype and device
/// (so f16/bf16 files load into an fp32 model).
void load_strict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source);

/// The loader every component uses: converts `module` to `dtype`, reads the folder's weights
/// (find_weights), passes each key through `rename` when given (an empty result drops the key),
/// loads strictly and leaves the module in eval mode, as diffusers' from_pretrained.
void load_folder_weights(torch::nn::Module& module, const std::filesystem::path& folder, torch::ScalarType dtype,
                         const std::function<std::string(const std::string&)>& rename = {});

/// Parameters and buffers by name, detached, contiguous, on the CPU.
TensorMap state_dict(const torch::nn::Module& module);

/// Writes tensors as one safetensors file (atomic), converting floating tensors to `dtype`
/// when given (e.g. kHalf for a compact export).
void write_tensors(const std::filesystem::path& path, const TensorMap& tensors,
                   std::optional<torch::ScalarType> dtype = std::nullopt,
                   const std::map<std::string, std::string>& metadata = {});

/// Typed reads of config.json values with errors naming the file and key.
class ConfigReader {
 public:
  ConfigReader(nlohmann::json doc, std::filesystem::path file) : doc_(std::move(doc)), file_(std::move(file)) {}
  bool has(const std::string& key) const { return doc_.contains(key) && !doc_.at(key).is_null(); }
  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const;
  double number(const std::string& key, std::optional<double> fallback = std::nullopt) const;
  bool boolean(const std::string& key, std::optional<bool> fallback = std::nullopt) const;
  std::string string(const std::string& key, std::optional<std::string> fallback = std::nullopt) const;
  std::vector<int64_t> integers(const std::string& key, std::optional<std::vector<int64_t>> fallback = std::nullopt) const;
  std::vector<std::string> strings(const std::string& key,
                                   std::optional<std::vector<std::string>> fallback = std::nullopt) const;
  /// An int, or a list of ints of length `n`, as a list of `n` ints.
  std::vector<int64_t> int_or_list(const std::string& key, size_t n, std::optional<int64_t> fallback = std::nullopt) const;
  /// ConfigError "<file>: key <key>: <why>".
  [[noreturn]] void fail(const std::string& key, const std::string& why) const;
  const std::filesystem::path& file() const { return file_; }

 private:
  const nlohmann::json& get(const std::string& key) const;
  nlohmann::json doc_;
  std::filesystem::path file_;
};

}  // namespace mcm::models
