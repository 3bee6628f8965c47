// The trainer's pieces against references (LibTorch's own AdamW, the cosine schedule's formula),
// NaN/Inf handling (a loss that goes non-finite is skipped and counted, K in a row stop the run
// with an error that keeps the last checkpoint), and checkpoints: saved atomically with DONE,
// resumed exactly, torn ones ignored. One rank (own main with a DistContext); the multi-rank
// behaviour is tested through `mcm teacher` (tests/stages/test_teacher.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "dist/dist_context.hpp"
#include "io/hdf5_store.hpp"
#include "train/checkpoint.hpp"
#include "train/optim.hpp"
#include "train/trainer.hpp"

using namespace mcm;
using ::testing::HasSubstr;
namespace stdfs = std::filesystem;
static dist::DistContext* g_ctx = nullptr;

namespace {
stdfs::path temp_dir(const std::string& name) {
  auto d = stdfs::temp_directory_path() / ("mcm-trainer-" + name + "-" + std::to_string(::getpid()));
  fs::remove_tree(d);
  stdfs::create_directories(d);
  return d;
}

// One shard of 16 tiny "clips" [2, 2, 2, 2] with text [3, 4].
stdfs::path make_shard(const stdfs::path& dir) {
  io::LatentShardSpec spec;
  spec.latent_shape = {2, 2, 2, 2};
  spec.text_len = 3;
  spec.text_dim = 4;
  auto path = dir / "video-0.h5";
  io::LatentShardWriter w(path, spec);
  for (int i = 0; i < 16; ++i) {
    auto lat = torch::full({16}, 0.1 * i, torch::kFloat16);
    auto txt = torch::full({12}, 0.01 * i, torch::kFloat16);
    std::vector<uint16_t> l(16), t(12);
    std::memcpy(l.data(), lat.data_ptr(), 32);
    std::memcpy(t.data(), txt.data_ptr(), 24);
    w.append(l.data(), t.data(), "caption " + std::to_string(i), "key" + std::to_string(i));
  }
  w.finish();
  return path;
}

struct Rig {
  stdfs::path dir;
  torch::nn::Linear model{nullptr};
  train::TrainerSpec spec;
  std::unique_ptr<train::LatentLoader> loader;

  Rig(const stdfs::path& d, int64_t steps, int64_t checkpoint_every) : dir(d) {
    torch::manual_seed(0);
    model = torch::nn::Linear(16, 16);
    spec.stage = "unit";
    spec.dir = dir / "unit";
    spec.optim.steps = steps;
    spec.optim.batch = 4;
    spec.optim.micro_batch = 2;
    spec.optim.lr = 1e-2;
    spec.optim.warmup_steps = 1;
    spec.optim.ema_decay = 0.9;
    spec.engine.checkpoint_every = checkpoint_every;
    spec.engine.max_bad_steps = 3;
    spec.engine.comm_timeout_s = 30;
    for (auto& p : model->named_parameters()) spec.params.emplace_back(p.key(), p.value());
    spec.identity = {{"unit.lr", spec.optim.lr}};
    spec.seed = 5;
    train::LoaderOptions lo;
    lo.shards = {dir / "video-0.h5"};
    lo.global_batch = 4;
    lo.micro_batch = 2;
    lo.seed = 5;
    loader = std::make_unique<train::LatentLoader>(lo);
  }
  // Regression of the clip onto a fixed target; `bad` steps return NaN.
  train::LossFn loss(std::set<int64_t> bad = {}) {
    auto m = model;
    return [m, bad](const train::Batch& b, int64_t step) mutable {
      auto x = b.latents.reshape({b.latents.size(0), -1});
      auto y = m->forward(x);
      train::LossTerms lt;
      lt.loss = (y - x.flip(1)).pow(2).mean();
      if (bad.count(step)) lt.loss = lt.loss * std::nan("");
      lt.logged["mean_out"] = y.mean().item<double>();
      return lt;
    };
  }
  train::TrainResult run(std::set<int64_t> bad = {}) {
    train::Trainer t(spec, *g_ctx, torch::Device(torch::kCPU), *loader, loss(bad));
    return t.run();
  }
};
}  // namespace

TEST(Optim, AdamWMatchesLibTorch) {
  torch::manual_seed(1);
  auto a = torch::randn({5, 3}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  train::OptimConfig o;
  o.weight_decay = 0.1;
  train::AdamW ours({{"w", a}}, o);
  torch::optim::AdamW ref({b}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.1));
  for (int i = 0; i < 10; ++i) {
    auto g = torch::randn({5, 3});
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    ours.step(0.01);
    ref.step();
  }
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6);
}

// Note [fused AdamW on GPUs]: on CUDA the update is torch's fused kernel, the gradient norm,
// zeroing and scaling multi-tensor kernels; they must agree with the loop the CPU runs, also
// after a restore (the kernel's step counts are refilled) and over several tensors.
TEST(Optim, FusedGpuPathsMatchTheLoop_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(2);
  train::OptimConfig o;
  o.weight_decay = 0.1;
  std::vector<torch::Tensor> fused_p, loop_p;
  train::NamedTensors fused_named, loop_named;
  for (auto shape : {std::vector<int64_t>{7, 5}, std::vector<int64_t>{3}, std::vector<int64_t>{2, 2, 2}}) {
    auto w = torch::randn(shape, torch::kCUDA);
    fused_p.push_back(w.clone().requires_grad_(true));
    loop_p.push_back(w.clone().requires_grad_(true));
    fused_named.emplace_back("w" + std::to_string(fused_named.size()), fused_p.back());
    loop_named.emplace_back("w" + std::to_string(loop_named.size()), loop_p.back());
  }
  auto fused = std::make_unique<train::AdamW>(fused_named, o, /*allow_fused=*/true);
  train::AdamW loop(loop_named, o, /*allow_fused=*/false);
  for (int i = 0; i < 6; ++i) {
    train::zero_grads(fused_named);
    train::zero_grads(loop_named);
    for (size_t j = 0; j < fused_p.size(); ++j) {
      auto g = torch::randn(fused_p[j].sizes(), torch::kCUDA) * 3;
      fused_p[j].mutable_grad().add_(g);
      loop_p[j].mutable_grad().add_(g);
    }
    const double nf = train::grad_norm(fused_named), nl = train::grad_norm(loop_named);
    double ref = 0;
    for (auto& p : loop_p) ref += p.grad().cpu().to(torch::kFloat64).pow(2).sum().item<double>();
    EXPECT_NEAR(nf, std::sqrt(ref), 1e-5 * std::sqrt(ref));
    train::clip_grads(fused_named, nf, 2.0);
    train::clip_grads(loop_named, nl, 2.0);
    fused->step(0.01);
    loop.step(0.01);
    if (i == 2) {  // a restore in the middle: the fused kernel's step counts are refilled
      auto state = fused->state();
      fused = std::make_unique<train::AdamW>(fused_named, o, true);
      fused->load_state(state, loop.steps_taken(), "test");
    }
  }
  for (size_t j = 0; j < fused_p.size(); ++j)
    EXPECT_LT((fused_p[j] - loop_p[j]).abs().max().item<double>(), 1e-6) << "tensor " << j;
}

TEST(Optim, CosineWithWarmup) {
  train::OptimConfig o;
  o.steps = 110;
  o.warmup_steps = 10;
  o.lr = 1.0;
  o.lr_min = 0.1;
  EXPECT_DOUBLE_EQ(train::lr_at(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(train::lr_at(o, 9), 1.0);
  EXPECT_DOUBLE_EQ(train::lr_at(o, 10), 1.0);
  EXPECT_NEAR(train::lr_at(o, 60), 0.55, 1e-12);
  EXPECT_NEAR(train::lr_at(o, 110), 0.1, 1e-12);
}

TEST(Optim, ClipByGlobalNorm) {
  auto p = torch::zeros({2}).requires_grad_(true);
  auto q = torch::zeros({1}).requires_grad_(true);
  p.mutable_grad() = torch::tensor({3.0f, 0.0f});
  q.mutable_grad() = torch::tensor({4.0f});
  train::NamedTensors ps{{"p", p}, {"q", q}};
  double n = train::grad_norm(ps);
  EXPECT_DOUBLE_EQ(n, 5.0);
  train::clip_grads(ps, n, 1.0);
  EXPECT_NEAR(train::grad_norm(ps), 1.0, 1e-6);
}

TEST(Trainer, NonFiniteStepsAreSkippedThenStop) {
  auto dir = temp_dir("nan");
  make_shard(dir);
  {
    Rig rig(dir, 6, 100);
    auto before = rig.model->weight.detach().clone();
    auto r = rig.run({2, 3});  // two bad steps in a row (< 3): skipped, counted, training goes on
    EXPECT_EQ(r.step, 6);
    EXPECT_EQ(r.skipped_steps, 2);
    EXPECT_TRUE(std::isfinite(r.last_loss));
    EXPECT_FALSE(torch::equal(before, rig.model->weight.detach()));
    EXPECT_TRUE(torch::isfinite(rig.model->weight).all().item<bool>());
  }
  fs::remove_tree(dir / "unit");
  Rig rig(dir, 10, 2);
  try {
    rig.run({4, 5, 6, 7});  // 0-based indices: optimizer steps 5, 6, 7 (1-based, as logged)
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr("not finite for 3 steps in a row (steps 5..7"));
    EXPECT_THAT(e.what(), HasSubstr("step-00000006"));  // the last checkpoint is named and kept
  }
  EXPECT_TRUE(stdfs::exists(dir / "unit" / "checkpoints" / "step-00000006" / "DONE"));
  fs::remove_tree(dir);
}

TEST(Trainer, ResumeIsExactAndTornCheckpointsIgnored) {
  auto dir = temp_dir("resume");
  make_shard(dir);
  torch::Tensor ref;
  {
    Rig rig(dir, 8, 2);
    rig.run();
    ref = rig.model->weight.detach().clone();
  }
  auto ck = dir / "unit" / "checkpoints";
  EXPECT_EQ(train::complete_checkpoints(ck).size(), 3u);  // keep_checkpoints = 3: 4, 6, 8
  // Tear step 8 and 6: resume must use step 4 and land on the same weights.
  stdfs::remove(ck / "step-00000008" / "DONE");
  stdfs::remove(ck / "step-00000006" / "DONE");
  {
    Rig rig(dir, 8, 2);
    auto r = rig.run();
    EXPECT_EQ(r.resumed_from, 4);
    EXPECT_TRUE(torch::equal(ref, rig.model->weight.detach()));
  }
  // A checkpoint whose files changed after DONE is refused, naming the file.
  {
    auto f = ck / "step-00000008" / "optimizer.safetensors";
    auto bytes = fs::read_file(f);
    bytes[bytes.size() - 1] ^= 1;
    fs::write_atomic(f, std::string(bytes.begin(), bytes.end()));
    Rig rig(dir, 8, 2);
    try {
      rig.run();
      FAIL() << "expected a refusal";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("optimizer.safetensors"));
    }
  }
  // Another identity: refused with the key named.
  {
    fs::remove_tree(ck / "step-00000008");
    Rig rig(dir, 8, 2);
    rig.spec.identity = {{"unit.lr", 0.5}};
    try {
      rig.run();
      FAIL() << "expected a refusal";
    } catch (const ConfigError& e) {
      EXPECT_THAT(e.what(), HasSubstr("unit.lr 0.01 -> 0.5"));
    }
  }
  fs::remove_tree(dir);
}

// A critic trained step for step with the model: the main loss's gradient passes through the
// critic to the model but never reaches the critic's parameters; the critic's own loss trains it
// with its own learning rate; both optimizers resume exactly.
TEST(Trainer, CriticTrainsOnItsOwnLossOnly) {
  auto dir = temp_dir("critic");
  make_shard(dir);
  auto make = [&](Rig& rig, torch::nn::Linear critic, double critic_loss_scale) {
    train::CriticSpec c;
    c.name = "critic";
    c.optim = rig.spec.optim;
    c.optim.lr = 5e-2;
    for (auto& p : critic->named_parameters()) c.params.emplace_back("critic." + p.key(), p.value());
    auto m = rig.model;
    c.loss = [m, critic, critic_loss_scale](const train::Batch& b, int64_t) mutable {
      auto x = b.latents.reshape({b.latents.size(0), -1});
      train::LossTerms lt;
      lt.loss = critic_loss_scale * (critic->forward(x) - 1).pow(2).mean();
      lt.logged["critic_out"] = critic->forward(x).mean().item<double>();
      return lt;
    };
    rig.spec.critic = c;
  };
  auto main_loss = [](Rig& rig, torch::nn::Linear critic) {
    auto m = rig.model;
    return [m, critic](const train::Batch& b, int64_t) mutable {
      auto x = b.latents.reshape({b.latents.size(0), -1});
      auto y = m->forward(x);
      train::LossTerms lt;
      lt.loss = (y - x.flip(1)).pow(2).mean() + critic->forward(y).mean();  // through the critic
      return lt;
    };
  };
  {
    // A critic loss of zero gradient: its parameters must not move (they would if the main loss's
    // gradient reached them), while the model trains through it.
    Rig rig(dir, 3, 100);
    torch::manual_seed(1);
    torch::nn::Linear critic(16, 1);
    auto before = critic->weight.detach().clone();
    make(rig, critic, 0.0);
    auto w0 = rig.model->weight.detach().clone();
    train::Trainer t(rig.spec, *g_ctx, torch::Device(torch::kCPU), *rig.loader, main_loss(rig, critic));
    t.run();
    EXPECT_TRUE(torch::equal(before, critic->weight.detach()));
    EXPECT_FALSE(torch::equal(w0, rig.model->weight.detach()));
  }
  fs::remove_tree(dir / "unit");
  torch::Tensor ref_model, ref_critic;
  {
    Rig rig(dir, 6, 2);
    torch::manual_seed(1);
    torch::nn::Linear critic(16, 1);
    auto before = critic->weight.detach().clone();
    make(rig, critic, 1.0);
    train::Trainer t(rig.spec, *g_ctx, torch::Device(torch::kCPU), *rig.loader, main_loss(rig, critic));
    t.run();
    EXPECT_FALSE(torch::equal(before, critic->weight.detach()));
    ref_model = rig.model->weight.detach().clone();
    ref_critic = critic->weight.detach().clone();
  }
  auto ck = dir / "unit" / "checkpoints";
  EXPECT_TRUE(stdfs::exists(ck / "step-00000006" / "optimizer_critic.safetensors"));
  auto metrics = fs::read_text(dir / "unit" / "metrics.jsonl");
  EXPECT_THAT(metrics, HasSubstr("\"critic\":{\"grad_norm\""));
  EXPECT_THAT(metrics, HasSubstr("critic_out"));
  stdfs::remove(ck / "step-00000006" / "DONE");
  {
    Rig rig(dir, 6, 2);
    torch::manual_seed(7);  // other initial weights: the checkpoint must restore both
    torch::nn::Linear critic(16, 1);
    make(rig, critic, 1.0);
    train::Trainer t(rig.spec, *g_ctx, torch::Device(torch::kCPU), *rig.loader, main_loss(rig, critic));
    auto r = t.run();
    EXPECT_EQ(r.resumed_from, 4);
    EXPECT_TRUE(torch::equal(ref_model, rig.model->weight.detach()));
    EXPECT_TRUE(torch::equal(ref_critic, critic->weight.detach()));
  }
  fs::remove_tree(dir);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dist::DistContext ctx(&argc, &argv);
  g_ctx = &ctx;
  torch::set_num_threads(1);
  return RUN_ALL_TESTS();
}
