// The encoder interfaces prep uses, and their factories. The embedded defaults are an exact
// pixel-shuffle autoencoder and a frozen seeded word-level text encoder; the real VAE and CLIP
// text encoder (model zoo) implement the same interfaces and are chosen in [models.*].
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace mcm::models {

/// Frames in [-1, 1] <-> latents; each frame is encoded alone (as MCM encodes video).
class FrameAutoencoder {
 public:
  virtual ~FrameAutoencoder() = default;
  /// [N, 3, H, W] float in [-1, 1] -> [N, C, H/f, W/f] float32 on the CPU, already multiplied by
  /// scaling_factor(). Frame i's sampling noise (a VAE posterior sample) comes from
  /// `frame_seeds[i]` alone, so results never depend on the rank, the batch or the order that
  /// frames are encoded in.
  virtual torch::Tensor encode_frames(const torch::Tensor& frames, const std::vector<uint64_t>& frame_seeds) = 0;
  /// encode_frames with frame i seeded by noise_seed + i.
  torch::Tensor encode(const torch::Tensor& frames, uint64_t noise_seed = 0);
  /// Moves the weights to `device` in `dtype` (a VAE with force_upcast stays float32, as in
  /// diffusers); inputs are moved there per call.
  virtual void place(torch::Device device, torch::ScalarType dtype) {}
  /// Inverse of encode (expects scaled latents).
  virtual torch::Tensor decode(const torch::Tensor& latents) = 0;
  /// decode with gradient into the latents, on their device, in one pass: the frame
  /// discriminator's generator pass decodes the student's frames through it. The weights are
  /// not trained.
  virtual torch::Tensor decode_differentiable(const torch::Tensor& latents) = 0;
  virtual int64_t latent_channels() const = 0;
  virtual int64_t downsample() const = 0;
  virtual double scaling_factor() const = 0;
  virtual std::string name() const = 0;
  /// Checksum of what the config cannot describe (weight files); "" if none.
  virtual std::string content_hash() const { return ""; }
};

/// Captions -> token embeddings [B, L, D].
class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  /// [B, L, D] float32 on the CPU.
  virtual torch::Tensor encode(const std::vector<std::string>& captions) = 0;
  /// Moves the weights to `device` in `dtype`.
  virtual void place(torch::Device device, torch::ScalarType dtype) {}
  virtual int64_t max_length() const = 0;
  virtual int64_t dim() const = 0;
  virtual std::string name() const = 0;
  /// Checksum of what the config cannot describe (vocabulary/weight files); "" if none.
  virtual std::string content_hash() const { return ""; }
};

/// Exact, invertible: pixel_unshuffle by `factor` (3 -> 3*f*f channels), times scaling.
class PixelShuffleAutoencoder : public FrameAutoencoder {
 public:
  PixelShuffleAutoencoder(int64_t factor, double scaling);
  torch::Tensor encode_frames(const torch::Tensor& frames, const std::vector<uint64_t>& frame_seeds) override;
  torch::Tensor decode(const torch::Tensor& latents) override;
  torch::Tensor decode_differentiable(const torch::Tensor& latents) override;
  int64_t latent_channels() const override { return 3 * factor_ * factor_; }
  int64_t downsample() const override { return factor_; }
  double scaling_factor() const override { return scaling_; }
  std::string name() const override;

 private:
  int64_t factor_;
  double scaling_;
};

/// Word tokenizer over a vocabulary file (one token per line; the first four lines are
/// <pad>, <bos>, <eos>, <unk>), then a frozen embedding seeded by `seed`, plus sinusoidal
/// positions, layer-normalised. Deterministic on any machine.
class WordTextEncoder : public TextEncoder {
 public:
  WordTextEncoder(const std::filesystem::path& vocab, int64_t max_length, int64_t dim, int64_t seed);
  /// Token ids [L]: <bos> words... <eos> <pad>..., truncated to keep <eos>.
  std::vector<int64_t> tokenize(const std::string& caption) const;
  torch::Tensor encode(const std::vector<std::string>& captions) override;
  int64_t max_length() const override { return max_length_; }
  int64_t dim() const override { return dim_; }
  std::string name() const override;
  std::string content_hash() const override { return vocab_hash_; }
  size_t vocab_size() const { return words_.size(); }

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t max_length_, dim_, seed_;
  std::string vocab_hash_;
  torch::Tensor table_, positions_;
};

std::unique_ptr<FrameAutoencoder> make_autoencoder(const config::AutoencoderSection& cfg);
/// `run_dir` resolves the default vocabulary location.
std::unique_ptr<TextEncoder> make_text_encoder(const config::TextEncoderSection& cfg, const std::filesystem::path& run_dir);

/// "LibTorch 2.11.0".
std::string torch_version();

}  // namespace mcm::models
