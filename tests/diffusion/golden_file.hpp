// The diffusers golden tensors of make_golden.py beside this file, made once per oracle version
// (tests/golden.hpp) and shared by the diffusion test binaries through one fixture.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "io/safetensors.hpp"
#include "../golden.hpp"

namespace mcm::test {

inline torch::Tensor to_torch(const io::TensorView& v) {
  torch::ScalarType dt;
  switch (v.dtype) {
    case io::DType::F64: dt = torch::kFloat64; break;
    case io::DType::F32: dt = torch::kFloat32; break;
    case io::DType::F16: dt = torch::kFloat16; break;
    case io::DType::I64: dt = torch::kInt64; break;
    default: throw std::runtime_error("golden tensor of an unexpected dtype");
  }
  return torch::from_blob(const_cast<uint8_t*>(v.data), v.shape, dt).clone();
}

class DiffusionGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (file_) return;
    const auto dir = golden_dir("tests/diffusion/make_golden.py", {"{out}/golden.safetensors"});
    file_ = new io::SafetensorsFile(dir / "golden.safetensors");
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  static torch::Tensor get(const std::string& k) { return to_torch(file_->at(k)); }
  static nlohmann::json cases() { return nlohmann::json::parse(file_->metadata().at("cases")); }
  static inline io::SafetensorsFile* file_ = nullptr;
};

}  // namespace mcm::test
