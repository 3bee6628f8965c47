#include "eval/synth_detector.hpp"

#include <algorithm>
#include <functional>
#include <sstream>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "world/synth_world.hpp"

namespace mcm::eval {

namespace {
// The index in `vocab` of the first caption word it holds; DataError naming the caption if none.
int64_t word_index(const std::string& caption, const std::vector<std::string>& vocab, const char* what) {
  std::istringstream in(caption);
  for (std::string w; in >> w;)
    if (auto it = std::find(vocab.begin(), vocab.end(), w); it != vocab.end()) return static_cast<int64_t>(it - vocab.begin());
  throw DataError(cat("synthetic-world caption \"", caption, "\" names no ", what));
}
}  // namespace

SynthLabels synth_labels(const std::string& caption) {
  return {word_index(caption, synth::shapes(), "shape"), word_index(caption, synth::colours(), "colour"),
          word_index(caption, synth::directions(), "direction"), word_index(caption, synth::speeds(), "speed")};
}

SynthNetImpl::SynthNetImpl(int64_t w) {
  using torch::nn::Conv3dOptions;
  // Strided 3-D convolutions over time and space, then a global average: the pooled 4w-wide
  // activations are the features.
  c1 = register_module("c1", torch::nn::Conv3d(Conv3dOptions(3, w, 3).stride({1, 2, 2}).padding(1)));
  c2 = register_module("c2", torch::nn::Conv3d(Conv3dOptions(w, 2 * w, 3).stride({2, 2, 2}).padding(1)));
  c3 = register_module("c3", torch::nn::Conv3d(Conv3dOptions(2 * w, 4 * w, 3).stride({2, 2, 2}).padding(1)));
  shape = register_module("shape", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::shapes().size())));
  colour = register_module("colour", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::colours().size())));
  direction = register_module("direction", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::directions().size())));
  speed = register_module("speed", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::speeds().size())));
}

torch::Tensor SynthNetImpl::features(const torch::Tensor& x) {
  auto h = torch::relu(c1(x));
  h = torch::relu(c2(h));
  h = torch::relu(c3(h));
  return h.mean({2, 3, 4});
}

std::vector<torch::Tensor> SynthNetImpl::heads(const torch::Tensor& f) { return {shape(f), colour(f), direction(f), speed(f)}; }

namespace {
// uint8 [B, T, H, W, 3] -> float [B, 3, T, H, W] in [-1, 1].
torch::Tensor to_input(const torch::Tensor& videos) {
  require<DataError>(videos.dim() == 5 && videos.size(4) == 3 && videos.scalar_type() == torch::kUInt8, "synthetic-world ",
                     "detector: videos ", videos.sizes(), " of ", videos.scalar_type(), ", expected uint8 [B, T, H, W, 3]");
  return videos.permute({0, 4, 1, 2, 3}).to(torch::kFloat32) / 127.5 - 1.0;
}

// uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1].
torch::Tensor to_frame_input(const torch::Tensor& frames) {
  require<DataError>(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kUInt8, "synthetic-world ",
                     "frame detector: frames ", frames.sizes(), " of ", frames.scalar_type(), ", expected uint8 [B, H, W, 3]");
  return frames.permute({0, 3, 1, 2}).to(torch::kFloat32) / 127.5 - 1.0;
}

torch::Tensor label_tensor(const std::vector<SynthLabels>& l, const std::vector<int64_t>& idx, int k) {
  std::vector<int64_t> v;
  for (auto i : idx) {
    const auto& s = l[static_cast<size_t>(i)];
    v.push_back(k == 0 ? s.shape : k == 1 ? s.colour : k == 2 ? s.direction : s.speed);
  }
  return torch::tensor(v, torch::kInt64);
}

torch::Tensor label_tensor(const std::vector<FrameLabels>& l, const std::vector<int64_t>& idx, int k) {
  std::vector<int64_t> v;
  for (auto i : idx) {
    const auto& s = l[static_cast<size_t>(i)];
    v.push_back(k == 0 ? s.shape : k == 1 ? s.colour : s.source);
  }
  return torch::tensor(v, torch::kInt64);
}

// Both networks' features as detectors: each head's class probabilities, concatenated. Not the
// raw logits, as FVD takes I3D's: these small nets separate the synthetic world perfectly, their
// logits grow without bound, and their scale then dominates the distance (measured on the tiny
// run: with logits, 1-step samples, blurred to near-zero logits, scored the best FVD of all).
template <class Net>
torch::Tensor probabilities(Net& net, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  auto heads = net->heads(net->features(x));
  for (auto& h : heads) h = torch::softmax(h, 1);
  return torch::cat(heads, 1).to(torch::kCPU, torch::kFloat32);
}

class SynthDetector final : public VideoDetector {
 public:
  SynthDetector(SynthNet net, std::string checksum) : net_(std::move(net)), checksum_(std::move(checksum)) { net_->eval(); }
  torch::Tensor features(const torch::Tensor& videos) override { return probabilities(net_, to_input(videos)); }
  std::string name() const override { return "embedded:synth-video-net"; }
  std::string checksum() const override { return checksum_; }

 private:
  SynthNet net_;
  std::string checksum_;
};

class SynthFrameDetector final : public ImageDetector {
 public:
  SynthFrameDetector(SynthFrameNet net, std::string checksum) : net_(std::move(net)), checksum_(std::move(checksum)) { net_->eval(); }
  torch::Tensor features(const torch::Tensor& frames) override { return probabilities(net_, to_frame_input(frames)); }
  std::string name() const override { return "embedded:synth-frame-net"; }
  std::string checksum() const override { return checksum_; }

 private:
  SynthFrameNet net_;
  std::string checksum_;
};

// The training loop of both networks: AdamW on the summed cross-entropy of every head, batches
// of indices from `draw(step)`, deterministic for a seed. Returns the per-head accuracy over the
// last 10% of steps.
template <class Net, class Labels>
std::vector<double> train_heads(Net& net, const torch::Tensor& data, const std::vector<Labels>& labels, int heads,
                                const SynthTrainOptions& o, const std::function<std::vector<int64_t>(int64_t)>& draw,
                                torch::Tensor (*input)(const torch::Tensor&)) {
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0));
  std::vector<double> correct(static_cast<size_t>(heads), 0.0);
  double seen = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto idx = draw(step);
    auto logits = net->heads(net->features(input(data.index_select(0, torch::tensor(idx, torch::kInt64)))));
    torch::Tensor loss = torch::zeros({});
    for (int k = 0; k < heads; ++k)
      loss = loss + torch::nn::functional::cross_entropy(logits[static_cast<size_t>(k)], label_tensor(labels, idx, k));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step >= o.steps - std::max<int64_t>(1, o.steps / 10)) {
      for (int k = 0; k < heads; ++k)
        correct[static_cast<size_t>(k)] +=
            logits[static_cast<size_t>(k)].argmax(1).eq(label_tensor(labels, idx, k)).sum().template item<double>();
      seen += static_cast<double>(idx.size());
    }
  }
  for (double& c : correct) c /= seen;
  net->eval();
  return correct;
}

template <class Net, class Labels>
std::vector<double> accuracy_of(Net& net, const torch::Tensor& x, const std::vector<Labels>& labels, int heads) {
  torch::NoGradGuard ng;
  net->eval();
  std::vector<int64_t> all(labels.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  auto logits = net->heads(net->features(x));
  std::vector<double> acc;
  for (int k = 0; k < heads; ++k)
    acc.push_back(logits[static_cast<size_t>(k)].argmax(1).eq(label_tensor(labels, all, k)).to(torch::kFloat64).mean().template item<double>());
  return acc;
}
}  // namespace

SynthNet train_synth_net(const torch::Tensor& videos, const std::vector<SynthLabels>& labels, const SynthTrainOptions& o,
                         std::vector<double>* accuracy) {
  const int64_t n = videos.size(0);
  require<DataError>(n > 0 && static_cast<int64_t>(labels.size()) == n, "synthetic-world detector: ", n, " clips and ",
                     labels.size(), " labels");
  torch::manual_seed(rng::seed64(rng::key(o.seed, "eval", 0, "detector_init")));
  SynthNet net(o.width);
  auto draw = [&](int64_t step) {
    std::vector<int64_t> idx;
    rng::Stream st(rng::key(o.seed, "eval", static_cast<uint64_t>(step), "detector_batch"));
    for (int64_t b = 0; b < std::min(o.batch, n); ++b) idx.push_back(st.uniform_int(0, n - 1));
    return idx;
  };
  auto acc = train_heads(net, videos, labels, 4, o, draw, &to_input);
  if (accuracy) *accuracy = acc;
  return net;
}

std::vector<double> synth_net_accuracy(SynthNet& net, const torch::Tensor& videos, const std::vector<SynthLabels>& labels) {
  return accuracy_of(net, to_input(videos), labels, 4);
}

FrameLabels frame_labels(const std::string& caption, bool still) {
  return {word_index(caption, synth::shapes(), "shape"), word_index(caption, synth::colours(), "colour"), still ? 1 : 0};
}

SynthFrameNetImpl::SynthFrameNetImpl(int64_t w) {
  using torch::nn::Conv2dOptions;
  c1 = register_module("c1", torch::nn::Conv2d(Conv2dOptions(3, w, 3).padding(1)));
  c2 = register_module("c2", torch::nn::Conv2d(Conv2dOptions(w, 2 * w, 3).stride(2).padding(1)));
  c3 = register_module("c3", torch::nn::Conv2d(Conv2dOptions(2 * w, 4 * w, 3).stride(2).padding(1)));
  shape = register_module("shape", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::shapes().size())));
  colour = register_module("colour", torch::nn::Linear(4 * w, static_cast<int64_t>(synth::colours().size())));
  source = register_module("source", torch::nn::Linear(4 * w, 2));
}

torch::Tensor SynthFrameNetImpl::features(const torch::Tensor& x) {
  // Full resolution first, so a banner of two rows and the grain of a frame survive.
  auto h = torch::relu(c1(x));
  h = torch::relu(c2(h));
  h = torch::relu(c3(h));
  return h.mean({2, 3});
}

std::vector<torch::Tensor> SynthFrameNetImpl::heads(const torch::Tensor& f) { return {shape(f), colour(f), source(f)}; }

SynthFrameNet train_synth_frame_net(const torch::Tensor& frames, const std::vector<FrameLabels>& labels,
                                    const SynthTrainOptions& o, std::vector<double>* accuracy) {
  const int64_t n = frames.size(0);
  require<DataError>(n > 0 && static_cast<int64_t>(labels.size()) == n, "synthetic-world frame detector: ", n,
                     " frames and ", labels.size(), " labels");
  std::vector<int64_t> by_source[2];
  for (int64_t i = 0; i < n; ++i) by_source[labels[static_cast<size_t>(i)].source].push_back(i);
  require<DataError>(!by_source[0].empty() && !by_source[1].empty(), "synthetic-world frame detector: ",
                     by_source[0].size(), " video frames and ", by_source[1].size(), " stills; it needs both");
  torch::manual_seed(rng::seed64(rng::key(o.seed, "eval", 0, "frame_detector_init")));
  SynthFrameNet net(o.width);
  auto draw = [&](int64_t step) {
    std::vector<int64_t> idx;
    rng::Stream st(rng::key(o.seed, "eval", static_cast<uint64_t>(step), "frame_detector_batch"));
    for (int64_t b = 0; b < o.batch; ++b) {
      const auto& pool = by_source[b % 2];
      idx.push_back(pool[static_cast<size_t>(st.uniform_int(0, static_cast<int64_t>(pool.size()) - 1))]);
    }
    return idx;
  };
  auto acc = train_heads(net, frames, labels, 3, o, draw, &to_frame_input);
  if (accuracy) *accuracy = acc;
  return net;
}

std::vector<double> synth_frame_net_accuracy(SynthFrameNet& net, const torch::Tensor& frames, const std::vector<FrameLabels>& labels) {
  return accuracy_of(net, to_frame_input(frames), labels, 3);
}

std::unique_ptr<ImageDetector> synth_frame_detector(SynthFrameNet net, std::string checksum) {
  return std::make_unique<SynthFrameDetector>(std::move(net), std::move(checksum));
}

std::unique_ptr<VideoDetector> synth_detector(SynthNet net, std::string checksum) {
  return std::make_unique<SynthDetector>(std::move(net), std::move(checksum));
}

}  // namespace mcm::eval
