// Fréchet distance and the FVD detector path against StyleGAN-V's computation (make_eval_golden.py:
// float64 moments, population covariance, scipy's sqrtm of the covariance product), the moments'
// reduction over split data, and the TorchScript detector's calling convention.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/frechet.hpp"
#include "eval/video_detector.hpp"
#include "models/weights.hpp"
#include "../golden.hpp"
#include "../test_util.hpp"

using namespace mcm;

namespace {
const std::filesystem::path& golden() {
  static const std::filesystem::path dir = test::golden_dir("tests/eval/make_eval_golden.py");
  return dir;
}
}  // namespace

TEST(Frechet, MatchesStyleGanVWithScipySqrtm) {
  auto g = models::read_tensors(golden() / "golden.safetensors");
  nlohmann::json cases;
  std::ifstream(golden() / "cases.json") >> cases;
  for (auto& [name, ref] : cases.items()) {
    eval::FeatureStats a, b;
    a.add(g.at(name + "/a"));
    b.add(g.at(name + "/b"));
    const double fd = eval::frechet_distance(a, b, name);
    // The rank-deficient case (fewer samples than dimensions) is where sqrtm of the non-symmetric
    // product is least accurate; the symmetric form is the better of the two there.
    const double tol = name == "low_rank" ? 1e-6 : 1e-9;
    EXPECT_NEAR(fd, ref.get<double>(), tol * std::max(1.0, std::abs(ref.get<double>()))) << name;
    std::printf("%s: ours %.12g, StyleGAN-V/scipy %.12g\n", name.c_str(), fd, ref.get<double>());
  }
}

TEST(Frechet, SplitSumsReduceToTheWholeAndIdenticalSetsAreAtZero) {
  torch::manual_seed(3);
  auto x = torch::randn({40, 6}, torch::kFloat64);
  eval::FeatureStats whole, part1, part2;
  whole.add(x);
  part1.add(x.slice(0, 0, 17));
  part2.add(x.slice(0, 17));
  // What an all-reduce of two ranks' flat sums gives.
  auto merged = eval::FeatureStats::from_flat(part1.flat() + part2.flat(), 6);
  EXPECT_EQ(merged.count, 40);
  EXPECT_LT((merged.mean() - whole.mean()).abs().max().item<double>(), 1e-14);
  EXPECT_LT((merged.cov() - whole.cov()).abs().max().item<double>(), 1e-13);
  EXPECT_NEAR(eval::frechet_distance(whole, merged), 0.0, 1e-9);
  // Population covariance (divided by N).
  auto c = x - x.mean(0);
  EXPECT_LT((whole.cov() - c.t().matmul(c) / 40).abs().max().item<double>(), 1e-13);
}

TEST(Frechet, BadInputIsRefused) {
  eval::FeatureStats a, b;
  a.add(torch::randn({5, 3}));
  test::expect_error<DataError>([&] { a.add(torch::randn({5, 4})); }, {"4-d features added to 3-d"});
  test::expect_error<DataError>([&] { a.add(torch::full({2, 3}, NAN)); }, {"non-finite"});
  b.add(torch::randn({1, 3}));
  test::expect_error<DataError>([&] { eval::frechet_distance(a, b, "fake vs real"); }, {"fake vs real", "at least 2"});
}

TEST(VideoDetector, CallsTorchScriptWithStyleGanVsConvention) {
  auto g = models::read_tensors(golden() / "golden.safetensors");
  auto det = eval::load_torchscript_detector(golden() / "fake_i3d.pt", torch::kCPU);
  auto f = det->features(g.at("i3d/videos"));
  EXPECT_LT((f - g.at("i3d/features")).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(det->name(), "torchscript:fake_i3d.pt");
  EXPECT_EQ(det->checksum().rfind("xxh3:", 0), 0u);
  test::expect_error<DataError>([&] { det->features(torch::zeros({2, 4, 8, 8, 3}, torch::kFloat32)); },
                                {"fake_i3d.pt", "expected uint8 [B, T, H, W, 3]"});
  test::expect_error<IoError>([&] { eval::load_torchscript_detector(golden() / "missing.pt", torch::kCPU); },
                              {"missing.pt", "not found"});
  test::expect_error<IoError>([&] { eval::load_torchscript_detector(golden() / "cases.json", torch::kCPU); },
                              {"cases.json", "not a TorchScript file"});
}
