// Feature detectors for the Fréchet distances: videos for FVD, frames for frame quality.
// The reference video detector is StyleGAN-V's I3D TorchScript file
// (i3d_torchscript.pt, the TF-Hub Kinetics-400 I3D), called the way StyleGAN-V calls it:
// detector(videos, rescale=True, resize=True, return_features=True) on uint8 [B, 3, T, H, W],
// which rescales to [-1, 1] and resizes to 224 inside and returns 400-d features
// (../shared/notes/REFERENCES.md section 2.1). Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>

namespace mcm::eval {

class VideoDetector {
 public:
  virtual ~VideoDetector() = default;
  /// Features [B, D] (float32, CPU) of uint8 RGB videos [B, T, H, W, 3].
  virtual torch::Tensor features(const torch::Tensor& videos) = 0;
  /// What the protocol records: the detector's kind and its file's checksum.
  virtual std::string name() const = 0;
  virtual std::string checksum() const = 0;
};

/// Loads a TorchScript detector with StyleGAN-V's I3D calling convention onto `device`. IoError
/// naming the file when it is missing or not TorchScript.
std::unique_ptr<VideoDetector> load_torchscript_detector(const std::filesystem::path& file, torch::Device device);

/// Frame features, for the Fréchet distance of generated frames to the high-quality image set.
/// The reference is the FID Inception TorchScript of stylegan2-ada-pytorch / StyleGAN-V
/// (inception-2015-12-05.pt), called as detector(images, return_features=True) on uint8
/// [B, 3, H, W], which resizes to 299 inside and returns 2048-d pool features.
class ImageDetector {
 public:
  virtual ~ImageDetector() = default;
  /// Features [B, D] (float32, CPU) of uint8 RGB images [B, H, W, 3].
  virtual torch::Tensor features(const torch::Tensor& images) = 0;
  virtual std::string name() const = 0;
  virtual std::string checksum() const = 0;
};

/// Loads a TorchScript image detector with that calling convention onto `device`; IoError as above.
std::unique_ptr<ImageDetector> load_torchscript_image_detector(const std::filesystem::path& file, torch::Device device);

}  // namespace mcm::eval
