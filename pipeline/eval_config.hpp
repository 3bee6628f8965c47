// [eval]: `mcm eval`, metrics of `mcm sample`'s files (Note [sections] in core/config.hpp).
// Registered in eval.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"

namespace mcm::stages {

struct EvalSection {
  static constexpr const char* kName = "eval";
  /// FVD's video detector: a TorchScript file with StyleGAN-V's I3D calling convention
  /// (i3d_torchscript.pt), or "" for the embedded detector trained on the run's own clips
  /// (synthetic-world captions only).
  std::string detector;
  int64_t real_clips = 2048;       ///< reference clips from prep's video shards (in shard order)
  int64_t detector_steps = 1500;   ///< embedded detector: training steps (batch 32)
  int64_t batch = 16;              ///< clips per detector forward
  /// Frame quality's image detector: a TorchScript file with the FID Inception convention
  /// (stylegan2-ada-pytorch's inception-2015-12-05.pt), or "" for the embedded frame detector
  /// trained on the run's reference frames and stills (synthetic-world captions only).
  std::string frame_detector;
  int64_t real_images = 2048;      ///< reference stills from prep's image shards (in shard order)
  /// CLIP score: a CLIP TorchScript with OpenAI's encode_image/encode_text (eval/clip_score.hpp)
  /// and CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); both or neither.
  std::string clip_model, clip_vocab;
  int64_t clip_resolution = 224;   ///< used when the model has no visual.input_resolution

  void visit(config::FieldVisitor& v);
  void validate(const config::Config& cfg) const;
};

}  // namespace mcm::stages
