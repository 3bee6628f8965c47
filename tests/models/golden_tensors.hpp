// The golden.safetensors a golden script beside the model tests writes (tests/golden.hpp makes the
// folder once per oracle version), read once per test process.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>

#include "models/weights.hpp"
#include "../golden.hpp"

namespace mcm::test {

class GoldenTensors {
 public:
  explicit GoldenTensors(const std::string& script)
      : dir(golden_dir(script)), tensors(models::read_tensors(dir / "golden.safetensors")) {}
  /// The tensor `k`; std::runtime_error naming it when the script did not write it.
  const torch::Tensor& operator()(const std::string& k) const {
    auto it = tensors.find(k);
    if (it == tensors.end()) throw std::runtime_error("golden tensor " + k + " missing");
    return it->second;
  }
  bool has(const std::string& k) const { return tensors.count(k) > 0; }

  const std::filesystem::path dir;  ///< the script's folder: model folders beside golden.safetensors
  const models::TensorMap tensors;
};

}  // namespace mcm::test
