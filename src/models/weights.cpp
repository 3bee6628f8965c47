// Strict weight loading by reference names, and the safetensors <-> torch conversions.
#include "models/weights.hpp"

#include <fstream>
#include <set>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace mcm::models {
namespace fs = std::filesystem;

namespace {

torch::ScalarType to_torch(io::DType t) {
  switch (t) {
    case io::DType::F64: return torch::kFloat64;
    case io::DType::F32: return torch::kFloat32;
    case io::DType::F16: return torch::kFloat16;
    case io::DType::BF16: return torch::kBFloat16;
    case io::DType::I64: return torch::kInt64;
    case io::DType::I32: return torch::kInt32;
    case io::DType::I16: return torch::kInt16;
    case io::DType::I8: return torch::kInt8;
    case io::DType::U8: return torch::kUInt8;
    case io::DType::BOOL: return torch::kBool;
  }
  throw Error("unreachable dtype");
}

io::DType to_io(torch::ScalarType t, const std::string& key) {
  switch (t) {
    case torch::kFloat64: return io::DType::F64;
    case torch::kFloat32: return io::DType::F32;
    case torch::kFloat16: return io::DType::F16;
    case torch::kBFloat16: return io::DType::BF16;
    case torch::kInt64: return io::DType::I64;
    case torch::kInt32: return io::DType::I32;
    case torch::kInt16: return io::DType::I16;
    case torch::kInt8: return io::DType::I8;
    case torch::kUInt8: return io::DType::U8;
    case torch::kBool: return io::DType::BOOL;
    default: throw DataError(cat("tensor ", key, ": dtype ", t, " has no safetensors type"));
  }
}

std::string shape_str(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::string join_list(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

nlohmann::json read_config_json(const fs::path& folder) {
  const fs::path file = folder / "config.json";
  std::ifstream in(file);
  require<IoError>(static_cast<bool>(in), "cannot open ", file);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(cat(file, ": not valid JSON: ", e.what()));
  }
}

fs::path find_weights(const fs::path& folder) {
  require<IoError>(fs::is_directory(folder), "model folder ", folder, " does not exist");
  // diffusers/transformers names: stem[.variant].safetensors, and for shards
  // stem.safetensors.index[.variant].json (the variant goes before ".json" there).
  for (const char* variant : {"", ".fp16"})
    for (const char* stem : {"diffusion_pytorch_model", "model"})
      for (const auto& name : {cat(stem, variant, ".safetensors"), cat(stem, ".safetensors.index", variant, ".json")}) {
        const auto p = folder / name;
        if (fs::exists(p)) return p;
      }
  throw IoError(cat("no weights in ", folder,
                    ": looked for diffusion_pytorch_model.safetensors, model.safetensors, their sharded "
                    ".safetensors.index.json and their .fp16 variants (convert .bin checkpoints to safetensors first)"));
}

std::string folder_checksum(const fs::path& folder) {
  const auto weights = find_weights(folder);
  std::string parts = checksum::of_file(folder / "config.json") + "|" + checksum::of_file(weights);
  if (weights.string().ends_with(".json")) {  // an index over shards
    std::ifstream in(weights);
    std::set<std::string> shards;
    try {
      const auto doc = nlohmann::json::parse(in);
      for (const auto& [k, v] : doc.at("weight_map").items()) shards.insert(v.get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw DataError(cat(weights, ": bad index: ", e.what()));
    }
    for (const auto& s : shards) parts += "|" + checksum::of_file(folder / s);
  }
  return checksum::of_bytes(parts);
}

TensorMap read_tensors(const fs::path& file_or_index) {
  io::SafetensorsCheckpoint ckpt(file_or_index);
  TensorMap out;
  for (const auto& key : ckpt.keys()) {
    const io::TensorView& v = ckpt.at(key);
    std::vector<int64_t> shape(v.shape.begin(), v.shape.end());
    auto t = torch::empty(shape, torch::TensorOptions().dtype(to_torch(v.dtype)));
    if (v.nbytes) std::memcpy(t.data_ptr(), v.data, v.nbytes);
    out.emplace(key, std::move(t));
  }
  return out;
}

void KeyMismatch::add_misshaped(const std::string& key, c10::IntArrayRef file, c10::IntArrayRef model) {
  misshaped.push_back(cat(key, " (file ", shape_str(file), ", model ", shape_str(model), ")"));
}

void KeyMismatch::throw_if_any(const std::string& what) const {
  if (missing.empty() && misshaped.empty() && unexpected.empty()) return;
  std::string msg = what;
  if (!missing.empty()) msg += cat("; ", missing.size(), " missing: ", join_list(missing));
  if (!unexpected.empty()) msg += cat("; ", unexpected.size(), " unexpected: ", join_list(unexpected));
  if (!misshaped.empty()) msg += cat("; ", misshaped.size(), " mis-shaped: ", join_list(misshaped));
  throw DataError(msg);
}

void load_strict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source) {
  KeyMismatch bad;
  std::set<std::string> seen;
  torch::NoGradGuard no_grad;
  auto visit = [&](const std::string& name, torch::Tensor& target) {
    seen.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      bad.missing.push_back(name);
      return;
    }
    const torch::Tensor& src = it->second;
    if (src.sizes() != target.sizes()) {
      bad.add_misshaped(name, src.sizes(), target.sizes());
      return;
    }
    if (src.is_floating_point() != target.is_floating_point()) {
      bad.misshaped.push_back(cat(name, " (file dtype ", src.scalar_type(), ", model ", target.scalar_type(), ")"));
      return;
    }
    target.copy_(src.to(target.device(), target.scalar_type()));
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) visit(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) visit(b.key(), b.value());
  for (const auto& [k, v] : tensors)
    if (!seen.count(k)) bad.unexpected.push_back(k);
  bad.throw_if_any(cat(source, ": weights do not match the model"));
}

void load_folder_weights(torch::nn::Module& module, const fs::path& folder, torch::ScalarType dtype,
                         const std::function<std::string(const std::string&)>& rename) {
  module.to(dtype);
  const auto weights = find_weights(folder);
  TensorMap tensors = read_tensors(weights);
  if (rename) {
    TensorMap renamed;
    for (auto& [k, v] : tensors)
      if (auto name = rename(k); !name.empty()) renamed[name] = std::move(v);
    tensors = std::move(renamed);
  }
  load_strict(module, tensors, weights.string());
  module.eval();
}

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(true)) out[p.key()] = p.value().detach().to(torch::kCPU).contiguous();
  for (const auto& b : module.named_buffers(true)) out[b.key()] = b.value().detach().to(torch::kCPU).contiguous();
  return out;
}

void write_tensors(const fs::path& path, const TensorMap& tensors, std::optional<torch::ScalarType> dtype,
                   const std::map<std::string, std::string>& metadata) {
  TensorMap converted;
  std::map<std::string, io::TensorToWrite> views;
  for (const auto& [k, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU);
    if (dtype && c.is_floating_point()) c = c.to(*dtype);
    c = c.contiguous();
    views[k] = io::TensorToWrite{to_io(c.scalar_type(), k), c.sizes().vec(), c.data_ptr(),
                                 static_cast<size_t>(c.numel()) * c.element_size()};
    converted[k] = std::move(c);
  }
  io::write_safetensors(path, views, metadata);
}

// ---- ConfigReader ----

void ConfigReader::fail(const std::string& key, const std::string& why) const {
  throw ConfigError(cat(file_.string(), ": key \"", key, "\": ", why));
}

const nlohmann::json& ConfigReader::get(const std::string& key) const { return doc_.at(key); }

int64_t ConfigReader::integer(const std::string& key, std::optional<int64_t> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_number_integer()) fail(key, cat("expected an integer, got ", v.dump()));
  return v.get<int64_t>();
}

double ConfigReader::number(const std::string& key, std::optional<double> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_number()) fail(key, cat("expected a number, got ", v.dump()));
  return v.get<double>();
}

bool ConfigReader::boolean(const std::string& key, std::optional<bool> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_boolean()) fail(key, cat("expected true or false, got ", v.dump()));
  return v.get<bool>();
}

std::string ConfigReader::string(const std::string& key, std::optional<std::string> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_string()) fail(key, cat("expected a string, got ", v.dump()));
  return v.get<std::string>();
}

std::vector<int64_t> ConfigReader::integers(const std::string& key, std::optional<std::vector<int64_t>> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_array()) fail(key, cat("expected a list of integers, got ", v.dump()));
  std::vector<int64_t> out;
  for (const auto& e : v) {
    if (!e.is_number_integer()) fail(key, cat("expected a list of integers, got ", v.dump()));
    out.push_back(e.get<int64_t>());
  }
  return out;
}

std::vector<std::string> ConfigReader::strings(const std::string& key,
                                               std::optional<std::vector<std::string>> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "missing");
  }
  const auto& v = get(key);
  if (!v.is_array()) fail(key, cat("expected a list of strings, got ", v.dump()));
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) fail(key, cat("expected a list of strings, got ", v.dump()));
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> ConfigReader::int_or_list(const std::string& key, size_t n, std::optional<int64_t> fallback) const {
  if (has(key) && get(key).is_array()) {
    auto v = integers(key);
    if (v.size() != n) fail(key, cat("expected ", n, " values (one per block), got ", v.size()));
    return v;
  }
  return std::vector<int64_t>(n, integer(key, fallback));
}

}  // namespace mcm::models
