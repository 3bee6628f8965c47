// The embedded default's FVD detector: no pretrained I3D can be downloaded here, so a small 3-D
// convolutional network is trained on the synthetic world's own clips to recognise what varies
// in it (shape, colour, direction, speed), and its per-attribute class probabilities serve as the
// video features, through the same VideoDetector interface and Fréchet code as I3D's.
// Include only from torch units.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "eval/video_detector.hpp"

namespace mcm::eval {

/// The synthetic world's labels of one clip: indices into synth::shapes(), colours(),
/// directions(), speeds().
struct SynthLabels {
  int64_t shape = 0, colour = 0, direction = 0, speed = 0;
};
/// Labels from a synthetic-world caption ("a red circle moves left slowly on a dark background");
/// DataError naming the caption when a word is missing.
SynthLabels synth_labels(const std::string& caption);

struct SynthNetImpl : torch::nn::Module {
  explicit SynthNetImpl(int64_t width = 16);
  /// Features [B, 4 width] of videos [B, 3, T, H, W] in [-1, 1].
  torch::Tensor features(const torch::Tensor& x);
  /// Logits per attribute (shape, colour, direction, speed) of features.
  std::vector<torch::Tensor> heads(const torch::Tensor& f);
  torch::nn::Conv3d c1{nullptr}, c2{nullptr}, c3{nullptr};
  torch::nn::Linear shape{nullptr}, colour{nullptr}, direction{nullptr}, speed{nullptr};
};
TORCH_MODULE(SynthNet);

struct SynthTrainOptions {
  int64_t steps = 1500;
  int64_t batch = 32;
  double lr = 3e-3;
  uint64_t seed = 0;
  int64_t width = 16;
};
/// Trains the network on uint8 clips [N, T, H, W, 3] with their labels (CPU, deterministic for a
/// seed: batches drawn from the rng streams, torch's generator seeded). Returns the per-attribute
/// training accuracy of the last 10% of steps with the network.
SynthNet train_synth_net(const torch::Tensor& videos, const std::vector<SynthLabels>& labels, const SynthTrainOptions& o,
                         std::vector<double>* accuracy = nullptr);
/// Per-attribute accuracy (shape, colour, direction, speed) of the network on clips and labels.
std::vector<double> synth_net_accuracy(SynthNet& net, const torch::Tensor& videos, const std::vector<SynthLabels>& labels);

/// The frame detector of the embedded default, for the frame-quality distance: a small 2-D
/// network trained on the reference video frames and the high-quality stills to tell shape,
/// colour and source (0 a training-video frame, 1 a still). Its 12 class probabilities are the
/// frame features: a frame scores close to the image set when it shows the same things and looks
/// like a still rather than a degraded video frame.
struct FrameLabels {
  int64_t shape = 0, colour = 0, source = 0;
};
/// Labels from a synthetic-world video or image caption; DataError naming the caption when the
/// shape or colour is missing.
FrameLabels frame_labels(const std::string& caption, bool still);

struct SynthFrameNetImpl : torch::nn::Module {
  explicit SynthFrameNetImpl(int64_t width = 16);
  /// Features [B, 4 width] of images [B, 3, H, W] in [-1, 1].
  torch::Tensor features(const torch::Tensor& x);
  /// Logits per head (shape, colour, source).
  std::vector<torch::Tensor> heads(const torch::Tensor& f);
  torch::nn::Conv2d c1{nullptr}, c2{nullptr}, c3{nullptr};
  torch::nn::Linear shape{nullptr}, colour{nullptr}, source{nullptr};
};
TORCH_MODULE(SynthFrameNet);

/// Trains the frame network on uint8 frames [N, H, W, 3] with their labels, each batch half video
/// frames and half stills (there are far fewer stills); deterministic like train_synth_net.
/// Returns the per-head training accuracy of the last 10% of steps with the network.
SynthFrameNet train_synth_frame_net(const torch::Tensor& frames, const std::vector<FrameLabels>& labels,
                                    const SynthTrainOptions& o, std::vector<double>* accuracy = nullptr);
/// Per-head accuracy (shape, colour, source) on frames and labels.
std::vector<double> synth_frame_net_accuracy(SynthFrameNet& net, const torch::Tensor& frames, const std::vector<FrameLabels>& labels);
/// The network as an ImageDetector: its 12 class probabilities of uint8 [B, H, W, 3].
std::unique_ptr<ImageDetector> synth_frame_detector(SynthFrameNet net, std::string checksum);

/// The network as a VideoDetector: its 16 class probabilities (softmax per attribute: shape 4,
/// colour 6, direction 4, speed 2) of uint8 [B, T, H, W, 3]; `checksum` names its weights.
std::unique_ptr<VideoDetector> synth_detector(SynthNet net, std::string checksum);

}  // namespace mcm::eval
