// Reducer on CPU (MPI): equal to a plain all-reduce of the whole gradient, with unused
// parameters, with gradient accumulation; bucket layout; overlap statistics.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.hpp"
#include "dist/reducer.hpp"
#include "../mpi_test_main.hpp"
#include "tiny_net.hpp"

using namespace mcm;
using mcm::test::dist_ctx;

namespace {
constexpr double kTol = 1e-6;

std::unique_ptr<dist::Communicator> cpu_comm() { return dist::make_communicator(dist_ctx(), torch::kCPU, {}); }

// Small buckets so the tiny net spans several.
dist::ReducerOptions small_buckets() { return dist::ReducerOptions{0.0005, 0.002}; }

void expect_grads(test::TinyNet& net, const std::vector<torch::Tensor>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, t] = net.params[i];
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_LE((t.grad() - want[i]).abs().max().item<double>(), kTol) << name;
  }
}
}  // namespace

TEST(Reducer, MatchesPlainAllreduceWithUnusedParameters) {
  auto comm = cpu_comm();
  const int r = comm->rank();
  auto net = test::make_tiny_net(torch::kCPU), ref = test::make_tiny_net(torch::kCPU);
  dist::Reducer reducer(net.params, *comm, small_buckets());
  ASSERT_GT(reducer.bucket_layout().size(), 2u);
  for (int it = 0; it < 3; ++it) {  // the second and third iterations reuse the buckets
    comm->set_step(it);
    net.zero_grad();
    ref.zero_grad();
    const bool branch = r == 0;  // the branch is used by rank 0 only; unused.weight by nobody
    reducer.prepare(true);
    net.loss(test::rank_input(r, it, torch::kCPU), branch).backward();
    reducer.finish();
    ref.loss(test::rank_input(r, it, torch::kCPU), branch).backward();
    expect_grads(net, test::averaged_grads(ref, *comm));
    EXPECT_TRUE(torch::equal(net.at("unused.weight").grad(), torch::zeros({4, 4})));
    const auto s = reducer.last_stats();
    EXPECT_EQ(s.buckets, static_cast<int64_t>(reducer.bucket_layout().size()));
    EXPECT_GE(s.exposed_wait_s, 0);
  }
}

TEST(Reducer, AccumulationEqualsSumOfMicroBatchesThenAllreduce) {
  auto comm = cpu_comm();
  const int r = comm->rank();
  auto net = test::make_tiny_net(torch::kCPU), ref = test::make_tiny_net(torch::kCPU);
  dist::Reducer reducer(net.params, *comm, small_buckets());
  // Micro-batch 1 uses the branch on every rank, micro-batch 2 on none: the branch's gradient
  // comes only from the unsynced micro-batch and must still be reduced.
  reducer.prepare(false);
  net.loss(test::rank_input(r, 0, torch::kCPU), true).backward();
  reducer.finish();  // a no-op after prepare(false)
  reducer.prepare(true);
  net.loss(test::rank_input(r, 1, torch::kCPU), false).backward();
  reducer.finish();
  ref.loss(test::rank_input(r, 0, torch::kCPU), true).backward();
  ref.loss(test::rank_input(r, 1, torch::kCPU), false).backward();
  expect_grads(net, test::averaged_grads(ref, *comm));
}

TEST(Reducer, NoSyncMicroBatchKeepsLocalGradients) {
  auto comm = cpu_comm();
  const int r = comm->rank();
  auto net = test::make_tiny_net(torch::kCPU), ref = test::make_tiny_net(torch::kCPU);
  dist::Reducer reducer(net.params, *comm, small_buckets());
  reducer.prepare(false);
  net.loss(test::rank_input(r, 0, torch::kCPU), true).backward();
  ref.loss(test::rank_input(r, 0, torch::kCPU), true).backward();
  for (size_t i = 0; i < net.params.size(); ++i) {
    const auto& a = net.params[i].second.grad();
    const auto& b = ref.params[i].second.grad();
    ASSERT_EQ(a.defined(), b.defined());
    if (a.defined()) {
      EXPECT_TRUE(torch::equal(a, b)) << net.params[i].first;
    }
  }
}

TEST(Reducer, MisuseIsADistError) {
  auto comm = cpu_comm();
  auto net = test::make_tiny_net(torch::kCPU);
  dist::Reducer reducer(net.params, *comm, small_buckets());
  EXPECT_THROW(reducer.finish(), DistError);  // no prepare(true)
  auto x = torch::randn({3});
  EXPECT_THROW(dist::Reducer({{"not a leaf", x * 2}}, *comm, {}), DistError);
  // A second backward after one prepare(true): the hook's DistError comes out of backward().
  reducer.prepare(true);
  auto loss = net.loss(test::rank_input(comm->rank(), 0, torch::kCPU), true);
  loss.backward({}, /*retain_graph=*/true);
  try {
    loss.backward();
    ADD_FAILURE() << "no error";
  } catch (const DistError& e) {
    EXPECT_NE(std::string(e.what()).find("got its gradient twice"), std::string::npos) << e.what();
  }
  EXPECT_THROW(reducer.prepare(true), DistError);  // finish() is due first
  reducer.finish();
}

TEST(Reducer, BucketLayoutIsReverseOrderWithSmallFirstBucketAndDtypeSplit) {
  auto comm = cpu_comm();
  auto f = [](int64_t n, torch::Dtype dt = torch::kFloat) { return torch::zeros({n}, torch::dtype(dt)).requires_grad_(); };
  // 4 KiB per f32 parameter of 1024; first bucket 6 KiB, then 16 KiB.
  std::vector<std::pair<std::string, torch::Tensor>> ps{
      {"p0", f(1024)}, {"p1", f(1024)}, {"h0", f(1024, torch::kBFloat16)}, {"p2", f(1024)},
      {"p3", f(1024)}, {"p4", f(1024)}, {"p5", f(1024)},
      {"p6", f(1024)}};
  const double kib = 1.0 / 1024;
  dist::Reducer reducer(ps, *comm, dist::ReducerOptions{6 * kib, 16 * kib});
  using L = std::vector<std::vector<std::string>>;
  // f32 walks p6, p5 (8 KiB >= 6: first bucket closes), then p4 p3 p2 p1 (16 KiB), then p0;
  // the bf16 parameter opened its own bucket when met, between them.
  EXPECT_EQ(reducer.bucket_layout(), (L{{"p6", "p5"}, {"p4", "p3", "p2", "p1"}, {"h0"}, {"p0"}}));
}

TEST(Reducer, BucketsLaunchDuringBackward) {
  auto comm = cpu_comm();
  const int r = comm->rank();
  torch::manual_seed(3);
  std::vector<std::pair<std::string, torch::Tensor>> ps;
  const int layers = 8, width = 256;  // 256 KiB per layer
  for (int l = 0; l < layers; ++l)
    ps.emplace_back("layer" + std::to_string(l), (torch::randn({width, width}) / 16).requires_grad_());
  dist::Reducer reducer(ps, *comm, dist::ReducerOptions{0.25, 0.5});
  dist::Reducer::Stats s;
  for (int it = 0; it < 3; ++it) {
    for (auto& [n, t] : ps) t.mutable_grad() = torch::Tensor();
    torch::manual_seed(50 + r);
    auto h = torch::randn({64, width});
    reducer.prepare(true);
    for (auto& [n, t] : ps) h = torch::tanh(h.mm(t));
    h.pow(2).mean().backward();
    reducer.finish();
    s = reducer.last_stats();
    // Every bucket fills during backward (all parameters used), so every one launches there.
    EXPECT_EQ(s.buckets_launched_in_backward, s.buckets);
  }
  EXPECT_EQ(s.buckets, 5);
  if (r == 0)
    std::printf("[reducer] %lld buckets, comm %.3f ms, exposed wait %.3f ms (%d ranks)\n",
                static_cast<long long>(s.buckets), 1e3 * s.total_comm_s, 1e3 * s.exposed_wait_s, comm->world_size());
}
