// bfloat16 parity on the GPU: our UNet3D, AutoencoderKL and CLIP text model in bf16 against
// diffusers/transformers in bf16 on the same GPU, on make_model_golden.py's tiny models and inputs
// (make_bf16_golden.py, run with device cuda). Note [bf16 bound]: the bound on |ours - reference|
// is twice the reference's own bf16-vs-fp32 error, measured by that script: an implementation as
// accurate as the reference differs from it by at most the sum of the two errors. Skipped without
// a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "models/autoencoder_kl.hpp"
#include "models/clip_text.hpp"
#include "models/unet3d.hpp"
#include "models/weights.hpp"
#include "../golden.hpp"

using namespace mcm;
using namespace mcm::models;
namespace stdfs = std::filesystem;

namespace {

class Bf16Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    torch::set_num_threads(1);
    if (ref_) return;
    models_ = new stdfs::path(test::golden_dir("tests/models/make_model_golden.py"));
    const auto dir = test::golden_dir("tests/models/make_bf16_golden.py", {"cuda", models_->string()});
    inputs_ = new TensorMap(read_tensors(*models_ / "golden.safetensors"));
    ref_ = new TensorMap(read_tensors(dir / "bf16.safetensors"));
    std::ifstream in(dir / "ref_error.json");
    const auto doc = nlohmann::json::parse(in);
    errors_ = new std::map<std::string, double>(doc.at("ref_error").get<std::map<std::string, double>>());
    std::printf("[bf16] reference made on %s\n", doc.at("device").get<std::string>().c_str());
  }
  static void TearDownTestSuite() {
    delete models_;
    delete inputs_;
    delete ref_;
    delete errors_;
    models_ = nullptr;
    inputs_ = ref_ = nullptr;
    errors_ = nullptr;
  }

  static torch::Device device() { return torch::Device(torch::kCUDA); }
  /// An input of the fp32 goldens on the device, floating point ones in bf16.
  static torch::Tensor in(const std::string& key) {
    const auto& t = inputs_->at(key);
    return t.is_floating_point() ? t.to(device(), torch::kBFloat16) : t.to(device());
  }
  /// Expects our bf16 output for `key` within Note [bf16 bound] of the reference's bf16 output.
  static void expect_close(const std::string& key, const torch::Tensor& ours_dev) {
    const auto ours = ours_dev.to(torch::kFloat32).cpu();
    const auto& ref16 = ref_->at(key + "/bf16");
    const auto& ref32 = ref_->at(key + "/fp32");
    ASSERT_EQ(ours.sizes(), ref16.sizes()) << key;
    const double bound = 2 * errors_->at(key);
    const double e = (ours - ref16).abs().max().item<double>(), e32 = (ours - ref32).abs().max().item<double>();
    EXPECT_LE(e, bound) << key << ": ours vs reference, both bf16 (reference bf16 vs fp32: " << errors_->at(key) << ")";
    std::printf("[bf16] %-22s ours-ref %.3g (bound %.3g), ours-fp32 %.3g, ref-fp32 %.3g\n", key.c_str(), e, bound, e32,
                errors_->at(key));
  }

  static stdfs::path* models_;
  static TensorMap *inputs_, *ref_;
  static std::map<std::string, double>* errors_;
};
stdfs::path* Bf16Parity::models_ = nullptr;
TensorMap* Bf16Parity::inputs_ = nullptr;
TensorMap* Bf16Parity::ref_ = nullptr;
std::map<std::string, double>* Bf16Parity::errors_ = nullptr;

}  // namespace

TEST_F(Bf16Parity, Unet3DMatchesDiffusersBf16_CUDA) {
  torch::NoGradGuard ng;
  for (std::string name : {"unet_a", "unet_b"}) {
    auto unet = load_unet3d(*models_ / name, torch::kBFloat16);
    unet->to(device());
    for (std::string c : {"even", "odd"}) {
      const std::string key = name + "/" + c;
      std::optional<torch::Tensor> cond;
      if (inputs_->count(key + "/cond")) cond = in(key + "/cond");
      auto y = unet->forward(in(key + "/x"), in(key + "/t"), in(key + "/ctx"), cond);
      EXPECT_EQ(y.scalar_type(), torch::kBFloat16) << key;
      expect_close(key + "/y", y);
    }
  }
}

TEST_F(Bf16Parity, AutoencoderKLMatchesDiffusersBf16_CUDA) {
  torch::NoGradGuard ng;
  auto vae = load_autoencoder_kl(*models_ / "vae", torch::kBFloat16);
  vae->to(device());
  auto [mean, logvar] = vae->encode_moments(in("vae/x"));
  expect_close("vae/mean", mean);
  expect_close("vae/logvar", logvar);
  expect_close("vae/decoded", vae->decode_raw(in("vae/mean")));
}

TEST_F(Bf16Parity, ClipTextModelMatchesTransformersBf16_CUDA) {
  torch::NoGradGuard ng;
  for (std::string name : {"clip_a", "clip_b"}) {
    auto model = load_clip_text_model(*models_ / name, torch::kBFloat16);
    model->to(device());
    const auto ids = in(name + "/ids"), mask = in(name + "/mask");
    auto o = model->forward(ids);
    auto om = model->forward(ids, mask);
    expect_close(name + "/hidden", o.last_hidden_state);
    expect_close(name + "/pooled", o.pooled);
    // Real positions only, as the reference stores them (padding rows zeroed).
    expect_close(name + "/hidden_masked", om.last_hidden_state * mask.unsqueeze(-1).to(om.last_hidden_state.scalar_type()));
  }
}
