// The golden.safetensors a golden script beside the model tests writes (tests/golden.hpp makes the
// folder once per oracle version), read once per test process.
#pragma once
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

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

/// The fixture of one golden script's tests: one intra-op thread (sums in a fixed order) and the
/// script's tensors, read once per test process. `Script` names the script relative to the source
/// tree in `static constexpr const char* path`.
template <class Script>
class GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
  static const GoldenTensors& golden() {
    static const GoldenTensors tensors(Script::path);
    return tensors;
  }
  static const torch::Tensor& g(const std::string& k) { return golden()(k); }
  static bool has(const std::string& k) { return golden().has(k); }
};

}  // namespace mcm::test
