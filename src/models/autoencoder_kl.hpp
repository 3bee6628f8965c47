// AutoencoderKL (the SD VAE) as diffusers defines it: Encoder -> quant_conv -> diagonal Gaussian,
// post_quant_conv -> Decoder. Implements FrameAutoencoder, so prep uses it per frame, in slices of
// `slice_frames` frames to bound activation memory. Parameter names are diffusers' keys.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/encoders.hpp"
#include "models/layers.hpp"

namespace mcm::models {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels{64};
  int64_t layers_per_block = 1;
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  bool force_upcast = true;  ///< diffusers: run in float32 even when the pipeline is half (SD's VAE overflows in fp16)

  static AutoencoderKLConfig from_json(const nlohmann::json& doc, const std::filesystem::path& file);
  nlohmann::json to_json() const;
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const AutoencoderKLConfig& cfg);
  /// [N, 3, H, W] in [-1, 1] -> (mean, logvar) of the posterior, each [N, latent, H/f, W/f].
  std::pair<torch::Tensor, torch::Tensor> encode_moments(const torch::Tensor& x);
  /// Unscaled latents -> images.
  torch::Tensor decode_raw(const torch::Tensor& z);
  const AutoencoderKLConfig& config() const { return cfg_; }

 private:
  struct Coder;
  AutoencoderKLConfig cfg_;
  std::shared_ptr<Coder> encoder_, decoder_;
  layers::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

/// The VAE behind the FrameAutoencoder interface: scaled latents ((z - shift) * scale).
class VaeFrameAutoencoder : public FrameAutoencoder {
 public:
  enum class Mode { Mean, Sample };
  /// `folder`: the vae/ folder it came from ("" when built in memory), checksummed for the manifest.
  VaeFrameAutoencoder(AutoencoderKL vae, Mode mode, int64_t slice_frames, std::string folder);
  torch::Tensor encode_frames(const torch::Tensor& frames, const std::vector<uint64_t>& frame_seeds) override;
  torch::Tensor decode(const torch::Tensor& latents) override;
  torch::Tensor decode_differentiable(const torch::Tensor& latents) override;
  void place(torch::Device device, torch::ScalarType dtype) override;
  int64_t latent_channels() const override { return vae_->config().latent_channels; }
  int64_t downsample() const override { return int64_t{1} << (vae_->config().block_out_channels.size() - 1); }
  double scaling_factor() const override { return vae_->config().scaling_factor; }
  std::string name() const override;
  std::string content_hash() const override { return hash_; }
  AutoencoderKL& module() { return vae_; }

 private:
  AutoencoderKL vae_;
  Mode mode_;
  int64_t slice_;
  std::string source_, hash_;
};

/// From a diffusers `vae/` folder (config.json + safetensors), strictly, in `dtype`.
AutoencoderKL load_autoencoder_kl(const std::filesystem::path& folder, torch::ScalarType dtype = torch::kFloat32);

}  // namespace mcm::models
