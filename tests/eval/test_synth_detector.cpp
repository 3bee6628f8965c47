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

namespace {
// n frames [n, S, S, 3] of scenes from `stream`: rendered at 4x and box-averaged down (prep's
// resize), degraded like synth's videos (blur, noise, watermark) or clean like its stills.
torch::Tensor render_frames(int64_t n, const char* stream, bool still, std::vector<eval::FrameLabels>& labels) {
  const int big = 4 * kS;
  auto out = torch::empty({n, kS, kS, 3}, torch::kUInt8);
  std::vector<uint8_t> buf(static_cast<size_t>(big) * big * 3);
  for (int64_t i = 0; i < n; ++i) {
    auto s = synth::draw_scene(rng::key(6, stream, static_cast<uint64_t>(i), "scene"));
    labels.push_back(eval::frame_labels(still ? synth::image_caption(s) : synth::video_caption(s), still));
    synth::render_frame(s, static_cast<int>(i % 8), big, big, 2, buf.data());
    if (!still) synth::degrade(buf.data(), big, big, {1.0, 6.0, true, rng::key(6, stream, static_cast<uint64_t>(i), "noise")}, 0);
    auto t = torch::from_blob(buf.data(), {1, big, big, 3}, torch::kUInt8).permute({0, 3, 1, 2}).to(torch::kFloat32);
    out[i] = torch::adaptive_avg_pool2d(t, {kS, kS}).round().clamp(0, 255).permute({0, 2, 3, 1})[0].to(torch::kUInt8);
  }
  return out;
}
}  // namespace

TEST(SynthDetector, FrameNetTellsStillsFromVideoFramesAndItsFeaturesSeparateThem) {
  torch::set_num_threads(1);
  std::vector<eval::FrameLabels> train_l, video_l, still_l, still2_l;
  auto train = torch::cat({render_frames(384, "train_video", false, train_l), render_frames(128, "train_still", true, train_l)});
  auto videos = render_frames(128, "test_video", false, video_l);
  auto stills = render_frames(128, "test_still", true, still_l);
  auto stills2 = render_frames(128, "test_still2", true, still2_l);
  eval::SynthTrainOptions o;  // eval's defaults
  auto net = eval::train_synth_frame_net(train, train_l, o);
  auto av = eval::synth_frame_net_accuracy(net, videos, video_l), as = eval::synth_frame_net_accuracy(net, stills, still_l);
  std::printf("held-out frames: shape %.3f colour %.3f source %.3f; stills: shape %.3f colour %.3f source %.3f\n", av[0], av[1],
              av[2], as[0], as[1], as[2]);
  EXPECT_GE(av[1], 0.95);
  EXPECT_GE(as[1], 0.95);
  EXPECT_GE(av[2], 0.9);  // measured: video frames 0.97, stills 0.90 (128 training stills; 64 gave 0.81)
  EXPECT_GE(as[2], 0.85);
  auto det = eval::synth_frame_detector(net, "xxh3:test");
  auto stats = [&](const torch::Tensor& v) {
    eval::FeatureStats s;
    s.add(det->features(v));
    return s;
  };
  const double same = eval::frechet_distance(stats(stills), stats(stills2)), degraded = eval::frechet_distance(stats(stills), stats(videos));
  std::printf("frame FD stills vs stills %.4g, vs degraded video frames %.4g\n", same, degraded);
  EXPECT_GT(degraded, 3 * same);  // measured: 0.077 and 1.6
  test::expect_error<DataError>([] { eval::frame_labels("a red thing", true); }, {"a red thing", "no shape"});
  test::expect_error<DataError>([&] { eval::train_synth_frame_net(videos, video_l, o); }, {"0 stills"});
}
