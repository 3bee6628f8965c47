#include "eval/synth_detector.hpp"

#include <algorithm>
#include <sstream>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "world/synth_world.hpp"

namespace mcm::eval {

SynthLabels synth_labels(const std::string& caption) {
  std::istringstream in(caption);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  auto find = [&](const std::vector<std::string>& vocab, const char* what) {
    for (const auto& w : words)
      if (auto it = std::find(vocab.begin(), vocab.end(), w); it != vocab.end()) return static_cast<int64_t>(it - vocab.begin());
    throw DataError(cat("synthetic-world caption \"", caption, "\" names no ", what));
  };
  return {find(synth::shapes(), "shape"), find(synth::colours(), "colour"), find(synth::directions(), "direction"),
          find(synth::speeds(), "speed")};
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

torch::Tensor label_tensor(const std::vector<SynthLabels>& l, const std::vector<int64_t>& idx, int k) {
  std::vector<int64_t> v;
  for (auto i : idx) {
    const auto& s = l[static_cast<size_t>(i)];
    v.push_back(k == 0 ? s.shape : k == 1 ? s.colour : k == 2 ? s.direction : s.speed);
  }
  return torch::tensor(v, torch::kInt64);
}

class SynthDetector final : public VideoDetector {
 public:
  SynthDetector(SynthNet net, std::string checksum) : net_(std::move(net)), checksum_(std::move(checksum)) { net_->eval(); }
  torch::Tensor features(const torch::Tensor& videos) override {
    torch::NoGradGuard ng;
    // Each attribute's class probabilities, concatenated (16-d). Not the raw logits, as FVD takes
    // I3D's: this small net separates the synthetic world perfectly, its logits grow without bound,
    // and their scale then dominates the distance (measured on the tiny run: with logits, 1-step
    // samples, blurred to near-zero logits, scored the best FVD of all methods).
    auto heads = net_->heads(net_->features(to_input(videos)));
    for (auto& h : heads) h = torch::softmax(h, 1);
    return torch::cat(heads, 1).to(torch::kCPU, torch::kFloat32);
  }
  std::string name() const override { return "embedded:synth-video-net"; }
  std::string checksum() const override { return checksum_; }

 private:
  SynthNet net_;
  std::string checksum_;
};
}  // namespace

SynthNet train_synth_net(const torch::Tensor& videos, const std::vector<SynthLabels>& labels, const SynthTrainOptions& o,
                         std::vector<double>* accuracy) {
  const int64_t n = videos.size(0);
  require<DataError>(n > 0 && static_cast<int64_t>(labels.size()) == n, "synthetic-world detector: ", n, " clips and ",
                     labels.size(), " labels");
  torch::manual_seed(rng::seed64(rng::key(o.seed, "eval", 0, "detector_init")));
  SynthNet net(o.width);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0));
  std::vector<double> correct(4, 0.0);
  double seen = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    std::vector<int64_t> idx;
    rng::Stream st(rng::key(o.seed, "eval", static_cast<uint64_t>(step), "detector_batch"));
    for (int64_t b = 0; b < std::min(o.batch, n); ++b) idx.push_back(st.uniform_int(0, n - 1));
    auto x = to_input(videos.index_select(0, torch::tensor(idx, torch::kInt64)));
    auto logits = net->heads(net->features(x));
    torch::Tensor loss = torch::zeros({});
    for (int k = 0; k < 4; ++k) loss = loss + torch::nn::functional::cross_entropy(logits[static_cast<size_t>(k)], label_tensor(labels, idx, k));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step >= o.steps - std::max<int64_t>(1, o.steps / 10)) {
      for (int k = 0; k < 4; ++k)
        correct[static_cast<size_t>(k)] +=
            logits[static_cast<size_t>(k)].argmax(1).eq(label_tensor(labels, idx, k)).sum().item<double>();
      seen += static_cast<double>(idx.size());
    }
  }
  if (accuracy) {
    accuracy->clear();
    for (double c : correct) accuracy->push_back(c / seen);
  }
  net->eval();
  return net;
}

std::vector<double> synth_net_accuracy(SynthNet& net, const torch::Tensor& videos, const std::vector<SynthLabels>& labels) {
  torch::NoGradGuard ng;
  net->eval();
  std::vector<int64_t> all(static_cast<size_t>(videos.size(0)));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  auto logits = net->heads(net->features(to_input(videos)));
  std::vector<double> acc;
  for (int k = 0; k < 4; ++k)
    acc.push_back(logits[static_cast<size_t>(k)].argmax(1).eq(label_tensor(labels, all, k)).to(torch::kFloat64).mean().item<double>());
  return acc;
}

std::unique_ptr<VideoDetector> synth_detector(SynthNet net, std::string checksum) {
  return std::make_unique<SynthDetector>(std::move(net), std::move(checksum));
}

}  // namespace mcm::eval
