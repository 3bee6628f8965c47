// CLIP score of generated videos against their prompts, the text-alignment metric of
// text-to-video papers ("CLIPSIM"): per clip, 100 x the cosine of the L2-normalised image
// embedding of each frame and the prompt's text embedding, averaged over frames; the method's
// score is the mean over clips (torchmetrics' CLIPScore clamps that mean at 0, recorded as
// "clamped"). ../shared/notes/REFERENCES.md sections 2.6-2.8. Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mcm::tokenizer {
class ClipTokenizer;
}

namespace mcm::eval {

/// A CLIP model as TorchScript with OpenAI's methods: encode_image(float [B, 3, R, R], normalised
/// with CLIP's mean and std) -> [B, E] and encode_text(int64 [B, 77] token ids) -> [B, E]. That is
/// OpenAI's own JIT archive (ViT-B-32.pt; as shipped its graph is pinned to CUDA and fp16, so it
/// runs on a GPU), or any CLIP scripted with those methods, e.g. torch.jit.script of
/// clip.load(name, jit=False)[0], which runs on the CPU as well. R is the module's
/// visual.input_resolution when it has one, else `resolution`. Tokens: CLIP's BPE from
/// bpe_simple_vocab_16e6.txt.gz (tokenizer/clip_tokenizer.hpp), truncated to 77 with the end
/// token kept.
class ClipScorer {
 public:
  /// IoError naming the file when the model or vocabulary is missing or unreadable; DataError
  /// when the model lacks a method.
  ClipScorer(const std::filesystem::path& model, const std::filesystem::path& vocab, torch::Device device,
             int64_t resolution = 224);
  ~ClipScorer();
  ClipScorer(const ClipScorer&) = delete;
  ClipScorer& operator=(const ClipScorer&) = delete;

  /// Frame-averaged 100 x cosine per clip, float64 [N], for uint8 videos [N, T, H, W, 3] and
  /// N prompts.
  torch::Tensor scores(const torch::Tensor& videos, const std::vector<std::string>& prompts);
  /// CLIP's preprocessing of uint8 frames [B, H, W, 3]: bicubic resize of the shorter side to R
  /// (antialiased, as PIL's resize that clip.py calls), centre crop R x R, [0, 1], normalised.
  torch::Tensor preprocess(const torch::Tensor& frames) const;
  int64_t resolution() const { return resolution_; }
  /// What the protocol records: model and vocabulary files with checksums, resolution, scaling.
  nlohmann::json protocol() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t resolution_;
};

}  // namespace mcm::eval
