#include "eval/video_detector.hpp"

#include <torch/script.h>

#include "core/checksum.hpp"
#include "core/error.hpp"

namespace mcm::eval {
namespace {

// A TorchScript detector file: loading, checksum, and one call with the reference kwargs.
class TorchScriptModule {
 public:
  TorchScriptModule(const std::filesystem::path& file, torch::Device device, const char* what)
      : file_(file), device_(device), what_(what) {
    require<IoError>(std::filesystem::is_regular_file(file), what_, " ", file, " not found");
    checksum_ = checksum::of_file(file);
    try {
      module_ = torch::jit::load(file.string(), device);
    } catch (const c10::Error& e) {
      throw IoError(cat(what_, " ", file, ": not a TorchScript file this LibTorch can load: ", e.what_without_backtrace()));
    }
    module_.eval();
  }

  // uint8 channels-first input on the device -> features [B, D] (float32, CPU).
  torch::Tensor call(const torch::Tensor& x, const torch::jit::Kwargs& kw) {
    torch::NoGradGuard no_grad;
    torch::Tensor out;
    try {
      out = module_.forward({x.contiguous().to(device_)}, kw).toTensor();
    } catch (const c10::Error& e) {
      throw DataError(cat(what_, " ", file_, " on ", x.sizes(), ": ", e.what_without_backtrace()));
    }
    require<DataError>(out.dim() == 2 && out.size(0) == x.size(0), what_, " ", file_, ": returned ", out.sizes(), " for ",
                       x.size(0), " inputs, expected [B, D]");
    return out.to(torch::kCPU, torch::kFloat32);
  }
  std::string name() const { return cat("torchscript:", file_.filename().string()); }
  const std::string& checksum() const { return checksum_; }
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  torch::Device device_;
  const char* what_;
  torch::jit::Module module_;
  std::string checksum_;
};

class TorchScriptDetector final : public VideoDetector {
 public:
  TorchScriptDetector(const std::filesystem::path& file, torch::Device device) : m_(file, device, "video detector") {}
  torch::Tensor features(const torch::Tensor& videos) override {
    require<DataError>(videos.dim() == 5 && videos.size(4) == 3 && videos.scalar_type() == torch::kUInt8,
                       "video detector ", m_.file(), ": videos ", videos.sizes(), " of ", videos.scalar_type(),
                       ", expected uint8 [B, T, H, W, 3]");
    // [B, 3, T, H, W], 0..255: the detector rescales and resizes itself.
    return m_.call(videos.permute({0, 4, 1, 2, 3}), {{"rescale", true}, {"resize", true}, {"return_features", true}});
  }
  std::string name() const override { return m_.name(); }
  std::string checksum() const override { return m_.checksum(); }

 private:
  TorchScriptModule m_;
};

class TorchScriptImageDetector final : public ImageDetector {
 public:
  TorchScriptImageDetector(const std::filesystem::path& file, torch::Device device) : m_(file, device, "image detector") {}
  torch::Tensor features(const torch::Tensor& images) override {
    require<DataError>(images.dim() == 4 && images.size(3) == 3 && images.scalar_type() == torch::kUInt8,
                       "image detector ", m_.file(), ": images ", images.sizes(), " of ", images.scalar_type(),
                       ", expected uint8 [B, H, W, 3]");
    return m_.call(images.permute({0, 3, 1, 2}), {{"return_features", true}});  // [B, 3, H, W], 0..255
  }
  std::string name() const override { return m_.name(); }
  std::string checksum() const override { return m_.checksum(); }

 private:
  TorchScriptModule m_;
};

}  // namespace

std::unique_ptr<VideoDetector> load_torchscript_detector(const std::filesystem::path& file, torch::Device device) {
  return std::make_unique<TorchScriptDetector>(file, device);
}

std::unique_ptr<ImageDetector> load_torchscript_image_detector(const std::filesystem::path& file, torch::Device device) {
  return std::make_unique<TorchScriptImageDetector>(file, device);
}

}  // namespace mcm::eval
