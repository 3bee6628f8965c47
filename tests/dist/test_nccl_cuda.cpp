// NCCL backend: the handle owner and check macro (no GPU needed), and on a GPU (tests named
// *_CUDA, skipped without a device or with fewer devices than ranks): all-reduce, broadcast,
// barrier, bandwidth and the reducer on CUDA parameters.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "dist/reducer.hpp"
#include "../mpi_test_main.hpp"
#include "tiny_net.hpp"
#if MCM_WITH_NCCL
#include "dist/nccl_comm.hpp"
#endif

using namespace mcm;
using mcm::test::dist_ctx;

namespace {
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Skips unless every rank has a device of its own.
#define MCM_REQUIRE_GPU_PER_RANK()                                                          \
  do {                                                                                      \
    if (!MCM_WITH_NCCL) GTEST_SKIP() << "built without NCCL";                               \
    if (dist::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";                   \
    if (dist::cuda_device_count() < dist_ctx().world_size()) GTEST_SKIP() << "needs a GPU per rank"; \
  } while (0)

std::unique_ptr<dist::Communicator> gpu_comm() {
  dist::CommOptions o;
  o.timeout_s = 60;
  return dist::make_communicator(dist_ctx(), torch::kCUDA, o);
}
torch::Device dev() { return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(dist_ctx().device())); }
}  // namespace

#if MCM_WITH_NCCL
TEST(NcclComm, EmptyOwnerMovesAndAbortsSafely) {
  dist::NcclComm a;
  EXPECT_FALSE(a);
  dist::NcclComm b(std::move(a));
  EXPECT_FALSE(b);
  b.abort();
  EXPECT_EQ(b.async_error(), ncclSuccess);
}

TEST(NcclComm, CheckNamesCallRankAndVersion) {
  try {
    MCM_NCCL_CHECK(ncclInvalidArgument);
    ADD_FAILURE() << "no error";
  } catch (const DistError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "ncclInvalidArgument (rank " + std::to_string(dist_ctx().rank()) + ", NCCL 2.")) << m;
  }
}

TEST(NcclComm, InitMoveAbort_CUDA) {
  if (dist::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  ncclUniqueId id;
  MCM_NCCL_CHECK(ncclGetUniqueId(&id));
  torch::cuda::synchronize();  // the context exists
  auto c = dist::NcclComm::init(1, id, 0);  // a private world of one
  ASSERT_TRUE(c);
  dist::NcclComm d = std::move(c);
  EXPECT_FALSE(c);
  EXPECT_TRUE(d);
  EXPECT_EQ(d.async_error(), ncclSuccess);
  d.abort();
  EXPECT_FALSE(d);
}
#endif

TEST(NcclCommunicator, AllreduceBroadcastBarrier_CUDA) {
  MCM_REQUIRE_GPU_PER_RANK();
  auto comm = gpu_comm();
  EXPECT_EQ(comm->backend(), "nccl");
  const int n = comm->world_size(), r = comm->rank();
  for (auto dt : {torch::kFloat, torch::kDouble, torch::kBFloat16}) {
    auto t = torch::full({1000}, r + 1.0, torch::dtype(dt).device(dev()));
    comm->allreduce(t, dist::ReduceOp::kSum, "sum");
    EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, n * (n + 1) / 2.0, torch::dtype(dt)))) << dt;
    auto a = torch::full({1000}, 2.0 * (r + 1), torch::dtype(dt).device(dev()));
    comm->allreduce(a, dist::ReduceOp::kAvg, "avg");
    EXPECT_TRUE(torch::equal(a.cpu(), torch::full({1000}, n + 1.0, torch::dtype(dt)))) << dt;
  }
  auto base = torch::arange(12, torch::dtype(torch::kFloat).device(dev())).reshape({3, 4});
  auto view = base.t();
  comm->allreduce(view, dist::ReduceOp::kSum, "transposed");
  EXPECT_TRUE(torch::equal(base.cpu(), torch::arange(12, torch::kFloat).reshape({3, 4}) * n));
  // Async: launch three, wait in reverse.
  std::vector<torch::Tensor> ts;
  std::vector<std::unique_ptr<dist::Work>> ws;
  for (int k = 0; k < 3; ++k) {
    ts.push_back(torch::full({1 << (10 + 4 * k)}, (k + 1.0) * (r + 1), torch::dtype(torch::kFloat).device(dev())));
    ws.push_back(comm->allreduce_async(ts.back(), dist::ReduceOp::kSum, "async"));
  }
  for (int k = 2; k >= 0; --k) {
    ws[k]->wait();
    EXPECT_TRUE(torch::allclose(ts[k].cpu(), torch::full({1 << (10 + 4 * k)}, (k + 1.0) * n * (n + 1) / 2)));
  }
  auto b = (torch::arange(10) + 100 * r).to(dev());
  comm->broadcast(b, n - 1, "bcast");
  EXPECT_TRUE(torch::equal(b.cpu(), torch::arange(10) + 100 * (n - 1)));
  comm->barrier("test barrier");
  auto cpu = torch::ones({2});
  EXPECT_THROW(comm->allreduce(cpu, dist::ReduceOp::kSum, "cpu tensor"), DistError);
}

TEST(NcclCommunicator, Bandwidth_CUDA) {
  MCM_REQUIRE_GPU_PER_RANK();
  auto comm = gpu_comm();
  auto t = torch::ones({64 << 20}, torch::dtype(torch::kFloat).device(dev()));  // 256 MiB
  const double gbps = dist::measure_allreduce_gbps(*comm, t, 10);
  EXPECT_GT(gbps, 0);
  if (comm->rank() == 0) std::printf("[nccl] all-reduce 256 MiB f32, %d ranks: %.1f GB/s\n", comm->world_size(), gbps);
}

TEST(NcclCommunicator, ReducerMatchesPlainAllreduce_CUDA) {
  MCM_REQUIRE_GPU_PER_RANK();
  auto comm = gpu_comm();
  const int r = comm->rank();
  auto net = test::make_tiny_net(dev()), ref = test::make_tiny_net(dev());
  // Hooks run on the CUDA autograd thread here: launches happen there, on the comm stream.
  dist::Reducer reducer(net.params, *comm, dist::ReducerOptions{0.0005, 0.002});
  for (int it = 0; it < 2; ++it) {
    net.zero_grad();
    ref.zero_grad();
    reducer.prepare(true);
    net.loss(test::rank_input(r, it, dev()), r == 0).backward();
    reducer.finish();
    ref.loss(test::rank_input(r, it, dev()), r == 0).backward();
    auto want = test::averaged_grads(ref, *comm);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LE((net.params[i].second.grad() - want[i]).abs().max().item<double>(), 1e-6) << net.params[i].first;
  }
}
