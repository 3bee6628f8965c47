// MPI communicator under a singleton and mpiexec -n 2: in-place all-reduce (sum/avg, f32/f64/
// bf16/half, non-contiguous), broadcast, barrier, async overlap, the FUNNELED thread rule, and a
// timeout that names the peer (with and without heartbeats), after which the ranks resync.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "../mpi_test_main.hpp"
#include "core/fs.hpp"

using namespace mcm;
using mcm::test::dist_ctx;

namespace {
std::unique_ptr<dist::Communicator> cpu_comm(dist::CommOptions o = {}) {
  return dist::make_communicator(dist_ctx(), torch::kCPU, o);
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST(MpiCommunicator, AllreduceSumAndAvgPerDtype) {
  auto comm = cpu_comm();
  EXPECT_EQ(comm->backend(), "mpi");
  const int n = comm->world_size(), r = comm->rank();
  ASSERT_EQ(r, dist_ctx().rank());
  for (auto dt : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf}) {
    auto t = torch::full({3, 5}, r + 1.0, torch::dtype(dt));
    auto alias = t;  // in place: the same storage gets the result
    comm->allreduce(t, dist::ReduceOp::kSum, "sum");
    EXPECT_TRUE(alias.is_same(t));
    EXPECT_EQ(t.scalar_type(), dt);
    EXPECT_TRUE(torch::equal(t, torch::full({3, 5}, n * (n + 1) / 2.0, torch::dtype(dt)))) << dt;
    auto a = torch::full({7}, 2.0 * (r + 1), torch::dtype(dt));
    comm->allreduce(a, dist::ReduceOp::kAvg, "avg");
    EXPECT_TRUE(torch::equal(a, torch::full({7}, n + 1.0, torch::dtype(dt)))) << dt;
  }
  auto i = torch::full({4}, r + 1, torch::kLong);
  comm->allreduce(i, dist::ReduceOp::kSum, "int sum");
  EXPECT_EQ(i[0].item<int64_t>(), n * (n + 1) / 2);
  EXPECT_THROW(comm->allreduce(i, dist::ReduceOp::kAvg, "int avg"), DistError);
}

TEST(MpiCommunicator, NonContiguousTensorIsReducedInPlace) {
  auto comm = cpu_comm();
  const int n = comm->world_size();
  auto base = torch::arange(12, torch::kFloat).reshape({3, 4});
  auto view = base.t();  // non-contiguous view into base
  comm->allreduce(view, dist::ReduceOp::kSum, "transposed");
  EXPECT_TRUE(torch::equal(base, torch::arange(12, torch::kFloat).reshape({3, 4}) * n));
}

TEST(MpiCommunicator, BroadcastAndBarrier) {
  auto comm = cpu_comm();
  const int root = comm->world_size() - 1;
  for (auto dt : {torch::kFloat, torch::kBFloat16, torch::kLong}) {
    auto t = (torch::arange(10) + 100 * comm->rank()).to(dt);
    comm->broadcast(t, root, "bcast");
    EXPECT_TRUE(torch::equal(t, (torch::arange(10) + 100 * root).to(dt))) << dt;
  }
  comm->barrier("test barrier");
  auto t = torch::zeros({1});
  EXPECT_THROW(comm->broadcast(t, comm->world_size(), "bad root"), DistError);
}

TEST(MpiCommunicator, AsyncLaunchThreeWaitInReverse) {
  auto comm = cpu_comm();
  const int n = comm->world_size(), r = comm->rank();
  std::vector<torch::Tensor> ts;
  std::vector<std::unique_ptr<dist::Work>> works;
  for (int k = 0; k < 3; ++k) {
    ts.push_back(torch::full({1000 * (k + 1) * (k + 1)}, (k + 1.0) * (r + 1)));
    works.push_back(comm->allreduce_async(ts.back(), dist::ReduceOp::kSum, "async " + std::to_string(k)));
  }
  comm->progress();
  for (int k = 2; k >= 0; --k) {
    works[k]->wait();
    EXPECT_TRUE(works[k]->test());
    EXPECT_TRUE(torch::allclose(ts[k], torch::full_like(ts[k], (k + 1.0) * n * (n + 1) / 2))) << k;
  }
  // A Work dropped before completion is finished by the communicator later.
  auto dropped = torch::ones({100});
  comm->allreduce_async(dropped, dist::ReduceOp::kSum, "dropped");
  comm->barrier("after dropped");
  const auto t0 = std::chrono::steady_clock::now();
  while (!torch::equal(dropped, torch::full({100}, 1.0 * n)) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    comm->progress();  // completion is local: the barrier's end does not imply it
  EXPECT_TRUE(torch::equal(dropped, torch::full({100}, 1.0 * n)));
}

TEST(MpiCommunicator, OtherThreadIsRefused) {
  auto comm = cpu_comm();
  std::string msg;
  std::thread th([&] {
    auto t = torch::ones({2});
    try {
      comm->allreduce(t, dist::ReduceOp::kSum, "from a thread");
    } catch (const DistError& e) {
      msg = e.what();
    }
  });
  th.join();
  EXPECT_TRUE(contains(msg, "THREAD_FUNNELED")) << msg;
  EXPECT_TRUE(contains(msg, "'from a thread'")) << msg;
}

TEST(MpiCommunicator, CudaDeviceWithoutNcclOrGpuIsADistError) {
  try {
    dist::make_communicator(dist_ctx(), torch::kCUDA, {});
    if (MCM_WITH_NCCL && dist_ctx().device() >= 0) SUCCEED();  // a GPU machine: a real NCCL comm
    else ADD_FAILURE() << "no error";
  } catch (const DistError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, MCM_WITH_NCCL ? "no CUDA device" : "lacks NCCL")) << m;
    EXPECT_TRUE(contains(m, "rank " + std::to_string(dist_ctx().rank()))) << m;
  }
}

// Rank 1 skips a collective: rank 0 times out and names it. Then rank 1 issues its matching
// collective late, so both ranks are in step again and the suite goes on.
void timeout_case(bool heartbeats) {
  auto& ctx = dist_ctx();
  if (ctx.world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  dist::CommOptions o;
  o.timeout_s = 2;
  if (heartbeats) o.heartbeat_dir = test::shared_temp_dir("hb");
  o.heartbeat_interval_s = 0.2;
  auto comm = cpu_comm(o);
  comm->set_step(7);
  auto t = torch::ones({16});
  if (ctx.rank() == 1) {
    comm->set_phase("skipping");
    ctx.barrier();  // waits while rank 0 times out
    comm->allreduce(t, dist::ReduceOp::kSum, "skipped");  // the late match of rank 0's collective
    EXPECT_TRUE(torch::equal(t, torch::full({16}, 1.0 * ctx.world_size())));
  } else if (ctx.rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      comm->allreduce(t, dist::ReduceOp::kSum, "skipped");
      ADD_FAILURE() << "no timeout";
    } catch (const DistError& e) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_GE(s, 2.0);
      EXPECT_LT(s, 4.0);
      const std::string m = e.what();
      EXPECT_TRUE(contains(m, "allreduce 'skipped' at step 7 timed out after 2 s on rank 0: ")) << m;
      if (heartbeats)
        EXPECT_TRUE(contains(m, "rank 1 is alive but in 'skipping' at step 7")) << m;
      else
        EXPECT_TRUE(contains(m, "state of rank")) << m;
    }
    ctx.barrier();
  } else {
    ctx.barrier();
    comm->allreduce(t, dist::ReduceOp::kSum, "skipped");
  }
  comm->barrier("resync");  // drives rank 0's abandoned collective to completion
  comm.reset();             // its last heartbeat is written before the folder goes
  ctx.barrier();
  if (heartbeats && ctx.is_root()) fs::remove_tree(o.heartbeat_dir);
}

TEST(MpiCommunicator, TimeoutNamesThePeerFromHeartbeats) { timeout_case(true); }
TEST(MpiCommunicator, TimeoutWithoutHeartbeatsSaysPeersAreUnknown) { timeout_case(false); }

TEST(MpiCommunicator, BandwidthProbe) {
  auto comm = cpu_comm();
  auto t = torch::ones({1 << 18});
  const double gbps = dist::measure_allreduce_gbps(*comm, t, 5);
  EXPECT_GT(gbps, 0);
  if (comm->rank() == 0) std::printf("[mpi] all-reduce 1 MiB f32, %d ranks: %.2f GB/s\n", comm->world_size(), gbps);
}
