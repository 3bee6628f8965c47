// The embedded FVD detector: trained on rendered synthetic-world clips it recognises the held-out
// clips' shape, colour, direction and speed, and its features separate real clips from damaged
// ones in Fréchet distance (frames shuffled in time, colours swapped) clearly more than two real sets
// differ from each other.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/rng.hpp"
#include "eval/frechet.hpp"
#include "eval/synth_detector.hpp"
#include "world/synth_world.hpp"
#include "../test_util.hpp"

using namespace mcm;

namespace {
constexpr int kT = 8, kS = 16;

// n clips [n, T, S, S, 3] of scenes from stream `stream`, with their captions.
torch::Tensor render(int64_t n, const char* stream, std::vector<std::string>& captions) {
  auto out = torch::empty({n, kT, kS, kS, 3}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    auto s = synth::draw_scene(rng::key(5, stream, static_cast<uint64_t>(i), "scene"));
    captions.push_back(synth::video_caption(s));
    for (int t = 0; t < kT; ++t) synth::render_frame(s, t, kS, kS, 2, out[i][t].data_ptr<uint8_t>());
  }
  return out;
}

std::vector<eval::SynthLabels> labels_of(const std::vector<std::string>& captions) {
  std::vector<eval::SynthLabels> l;
  for (auto& c : captions) l.push_back(eval::synth_labels(c));
  return l;
}
}  // namespace

TEST(SynthDetector, LearnsTheWorldAndItsFeaturesSeparateDamagedClips) {
  torch::set_num_threads(1);
  std::vector<std::string> train_caps, test_caps, other_caps;
  auto train = render(512, "train", train_caps);
  auto test = render(256, "test", test_caps);
  auto other = render(256, "other", other_caps);
  eval::SynthTrainOptions o;
  std::vector<double> train_acc;
  auto net = eval::train_synth_net(train, labels_of(train_caps), o, &train_acc);
  auto acc = eval::synth_net_accuracy(net, test, labels_of(test_caps));
  std::printf("held-out accuracy: shape %.3f colour %.3f direction %.3f speed %.3f\n", acc[0], acc[1], acc[2], acc[3]);
  EXPECT_GE(acc[0], 0.85);
  EXPECT_GE(acc[1], 0.95);
  EXPECT_GE(acc[2], 0.9);
  EXPECT_GE(acc[3], 0.8);

  auto det = eval::synth_detector(net, "xxh3:test");
  auto stats = [&](const torch::Tensor& v) {
    eval::FeatureStats s;
    s.add(det->features(v));
    return s;
  };
  auto a = stats(test), b = stats(other);
  auto shuffled = stats(test.index_select(1, torch::tensor({3, 0, 6, 1, 7, 2, 5, 4}, torch::kInt64)));
  auto swapped = stats(test.flip(4));  // RGB -> BGR
  const double same = eval::frechet_distance(a, b), time = eval::frechet_distance(a, shuffled),
               colour = eval::frechet_distance(a, swapped);
  std::printf("FD real vs real %.4g, vs frames shuffled %.4g, vs colours swapped %.4g\n", same, time, colour);
  EXPECT_GT(time, 3 * same);  // measured: real vs real 0.078, shuffled 0.80, swapped 0.38
  EXPECT_GT(colour, 3 * same);
  // Deterministic for a seed.
  auto again = eval::train_synth_net(train, labels_of(train_caps), o);
  EXPECT_TRUE(torch::equal(again->features(test.permute({0, 4, 1, 2, 3}).to(torch::kFloat32) / 127.5 - 1),
                           net->features(test.permute({0, 4, 1, 2, 3}).to(torch::kFloat32) / 127.5 - 1)));
  test::expect_error<DataError>([] { eval::synth_labels("a red thing moves"); }, {"a red thing moves", "no shape"});
}
