#include "eval/video_detector.hpp"

#include <torch/script.h>

#include "core/checksum.hpp"
#include "core/error.hpp"

namespace mcm::eval {
namespace {

class TorchScriptDetector final : public VideoDetector {
 public:
  TorchScriptDetector(const std::filesystem::path& file, torch::Device device) : file_(file), device_(device) {
    require<IoError>(std::filesystem::is_regular_file(file), "video detector ", file, " not found");
    checksum_ = checksum::of_file(file);
    try {
      module_ = torch::jit::load(file.string(), device);
    } catch (const c10::Error& e) {
      throw IoError(cat("video detector ", file, ": not a TorchScript file this LibTorch can load: ", e.what_without_backtrace()));
    }
    module_.eval();
  }

  torch::Tensor features(const torch::Tensor& videos) override {
    require<DataError>(videos.dim() == 5 && videos.size(4) == 3 && videos.scalar_type() == torch::kUInt8,
                       "video detector ", file_, ": videos ", videos.sizes(), " of ", videos.scalar_type(),
                       ", expected uint8 [B, T, H, W, 3]");
    torch::NoGradGuard no_grad;
    auto x = videos.permute({0, 4, 1, 2, 3}).contiguous().to(device_);  // [B, 3, T, H, W], 0..255
    torch::jit::Kwargs kw{{"rescale", true}, {"resize", true}, {"return_features", true}};
    torch::Tensor out;
    try {
      out = module_.forward({x}, kw).toTensor();
    } catch (const c10::Error& e) {
      throw DataError(cat("video detector ", file_, " on ", x.sizes(), ": ", e.what_without_backtrace()));
    }
    require<DataError>(out.dim() == 2 && out.size(0) == videos.size(0), "video detector ", file_, ": returned ", out.sizes(),
                       " for ", videos.size(0), " videos, expected [B, D]");
    return out.to(torch::kCPU, torch::kFloat32);
  }

  std::string name() const override { return cat("torchscript:", file_.filename().string()); }
  std::string checksum() const override { return checksum_; }

 private:
  std::filesystem::path file_;
  torch::Device device_;
  torch::jit::Module module_;
  std::string checksum_;
};

}  // namespace

std::unique_ptr<VideoDetector> load_torchscript_detector(const std::filesystem::path& file, torch::Device device) {
  return std::make_unique<TorchScriptDetector>(file, device);
}

}  // namespace mcm::eval
