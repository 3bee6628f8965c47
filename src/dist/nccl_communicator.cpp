// The NCCL backend: one ncclComm per process on the rank's device, collectives on a dedicated
// comm stream, Work = a CUDA event polled against the deadline (then ncclCommAbort).
// Compiled only with MCM_WITH_NCCL.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <mutex>

#include "core/error.hpp"
#include "dist/comm_backends.hpp"
#include "dist/nccl_comm.hpp"
#include "dist/watchdog.hpp"

namespace mcm::dist {

void nccl_check(ncclResult_t r, const char* call, ncclComm_t comm) {
  if (r == ncclSuccess) return;
  int rank = -1, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const char* last = ncclGetLastError(comm);
  throw DistError(cat(call, " (rank ", rank, ", ", nccl_version(), "): ", ncclGetErrorString(r),
                      last && *last ? cat("; ", last) : std::string()));
}

NcclComm NcclComm::init(int world, const ncclUniqueId& id, int rank) {
  NcclComm c;
  MCM_NCCL_CHECK(ncclCommInitRank(&c.c_, world, id, rank));
  return c;
}

NcclComm::~NcclComm() { destroy(); }

NcclComm& NcclComm::operator=(NcclComm&& o) noexcept {
  if (this != &o) {
    destroy();
    c_ = o.c_;
    o.c_ = nullptr;
  }
  return *this;
}

void NcclComm::destroy() noexcept {
  if (!c_) return;
  ncclCommFinalize(c_);  // flushes queued work; errors are moot at this point
  ncclCommDestroy(c_);
  c_ = nullptr;
}

void NcclComm::abort() noexcept {
  if (!c_) return;
  ncclCommAbort(c_);
  c_ = nullptr;
}

ncclResult_t NcclComm::async_error() const noexcept {
  if (!c_) return ncclSuccess;
  ncclResult_t r = ncclSuccess;
  if (ncclCommGetAsyncError(c_, &r) != ncclSuccess) return ncclInternalError;
  return r;
}

namespace detail {
namespace {

ncclDataType_t nccl_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: return ncclNumTypes;
  }
}

class NcclCommunicator;

/// A launched collective: the event recorded after it on the comm stream, and its tensors
/// (kept alive until the Work goes; the caching allocator also knows the comm stream uses them).
class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator& c, std::string kind, std::string what, int64_t step, at::Tensor t)
      : c_(c), kind_(std::move(kind)), what_(std::move(what)), step_(step), start_(Clock::now()), t_(std::move(t)) {}
  bool test() override;
  void wait() override;

  NcclCommunicator& c_;
  const std::string kind_, what_;
  const int64_t step_;
  const Clock::time_point start_;
  at::Tensor t_;
  c10::cuda::CUDAEvent done_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const DistContext& ctx, c10::DeviceIndex device, const CommOptions& opts)
      : Communicator(ctx, opts), device_(device), stream_(c10::cuda::getStreamFromPool(true, device)) {
    ncclUniqueId id{};
    if (rank() == 0) MCM_NCCL_CHECK(ncclGetUniqueId(&id));
    MCM_MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, ctx.world()));
    c10::cuda::CUDAGuard guard(device_);
    comm_ = NcclComm::init(world_size(), id, rank());
  }

  ~NcclCommunicator() override {
    // Work still queued may wait for a peer that is gone: abort rather than finalise (which
    // would wait for it). Otherwise NcclComm's destructor finalises cleanly.
    if (comm_ && cudaStreamQuery(stream_.stream()) != cudaSuccess) {
      (void)cudaGetLastError();
      comm_.abort();
    }
  }

  std::string backend() const override { return "nccl"; }

  std::unique_ptr<Work> allreduce_async(at::Tensor& t, ReduceOp op, const std::string& what) override {
    return launch("allreduce", what, t, [&](const at::Tensor& buf, ncclComm_t comm, cudaStream_t s) {
      const auto type = nccl_type(buf.scalar_type());
      if (type == ncclNumTypes)
        throw DistError(cat(describe("allreduce", what, step()), " (rank ", rank(), "): dtype ", buf.scalar_type(),
                            " is not supported by NCCL"));
      nccl_check(ncclAllReduce(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), type,
                               op == ReduceOp::kAvg ? ncclAvg : ncclSum, comm, s),
                 "ncclAllReduce", comm);
    });
  }

  std::unique_ptr<Work> broadcast_async(at::Tensor& t, int root, const std::string& what) override {
    require<DistError>(root >= 0 && root < world_size(), describe("broadcast", what, step()), " (rank ", rank(),
                       "): root ", root, " is not a rank of a world of ", world_size());
    return launch("broadcast", what, t, [&](const at::Tensor& buf, ncclComm_t comm, cudaStream_t s) {
      nccl_check(ncclBroadcast(buf.data_ptr(), buf.data_ptr(), buf.nbytes(), ncclUint8, root, comm, s),
                 "ncclBroadcast", comm);
    });
  }

  /// NCCL has no barrier: a one-element all-reduce, waited for on the host.
  void barrier(const std::string& what) override {
    c10::cuda::CUDAGuard guard(device_);
    auto t = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    auto w = launch("barrier", what, t, [&](const at::Tensor& buf, ncclComm_t comm, cudaStream_t s) {
      nccl_check(ncclAllReduce(buf.data_ptr(), buf.data_ptr(), 1, ncclFloat32, ncclSum, comm, s), "ncclAllReduce", comm);
    });
    w->wait();
  }

  bool test(NcclWork& w) {
    check_async_error(w);
    return w.done_.query();
  }

  /// Polls the event with the deadline (from launch) and NCCL's async error; then makes the
  /// caller's current stream wait for the result.
  void wait(NcclWork& w) {
    Liveness::OpScope in_op(liveness(), cat(w.kind_, " ", w.what_));
    const auto deadline = w.start_ + Backoff::to_duration(options().timeout_s);
    const Backoff backoff(/*spin_s=*/0.01, /*sleep_us=*/50);
    while (!w.done_.query()) {
      check_async_error(w);
      if (Clock::now() > deadline) fail(timeout_message(w.kind_, w.what_, w.step_));
      backoff.pause();
    }
    w.done_.block(c10::cuda::getCurrentCUDAStream(device_));
  }

 protected:
  void progress_impl() override {}  // the GPU progresses by itself

 private:
  template <class Issue>
  std::unique_ptr<Work> launch(const char* kind, const std::string& what, at::Tensor& t, Issue issue) {
    std::lock_guard lk(mu_);  // hooks on autograd threads and the main thread may both launch
    const int64_t step = this->step();
    require<DistError>(static_cast<bool>(comm_), describe(kind, what, step), " (rank ", rank(), "): the NCCL communicator was aborted: ",
                       aborted_);
    require<DistError>(t.defined() && t.is_cuda() && t.device().index() == device_, describe(kind, what, step),
                       " (rank ", rank(), "): the NCCL communicator takes tensors on cuda:", device_, ", got ",
                       t.defined() ? cat(t.device()) : std::string("an undefined tensor"));
    c10::cuda::CUDAGuard guard(device_);
    auto cur = c10::cuda::getCurrentCUDAStream(device_);
    at::Tensor buf = t.contiguous();  // on the current stream, before the comm stream's wait
    // Note [comm stream]: the comm stream waits for everything queued so far on the caller's
    // stream (the gradient copies), and the allocator learns that the comm stream uses the
    // memory, so a tensor freed by the caller is not reused before the collective is done.
    c10::cuda::CUDAEvent ready;
    ready.record(cur);
    ready.block(stream_);
    auto w = std::make_unique<NcclWork>(*this, kind, what, step, t);
    {
      c10::cuda::CUDAStreamGuard on_comm(stream_);
      issue(buf, comm_.get(), stream_.stream());
      if (!buf.is_same(t)) t.copy_(buf);
    }
    c10::cuda::CUDACachingAllocator::recordStream(buf.storage().data_ptr(), stream_);
    if (!buf.is_same(t)) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    w->done_.record(stream_);
    return w;
  }

  void check_async_error(const NcclWork& w) {
    const ncclResult_t r = comm_.async_error();
    if (r == ncclSuccess || r == ncclInProgress) return;
    fail(cat(describe(w.kind_, w.what_, w.step_), " failed on rank ", rank(), " (", nccl_version(),
             "): ", ncclGetErrorString(r), "; ", ncclGetLastError(comm_.get()), "; peers: ",
             liveness().diagnose(options().timeout_s)));
  }

  [[noreturn]] void fail(const std::string& msg) {
    comm_.abort();  // its kernels would spin forever otherwise
    aborted_ = msg;
    throw DistError(msg);
  }

  const c10::DeviceIndex device_;
  c10::cuda::CUDAStream stream_;
  NcclComm comm_;
  std::mutex mu_;
  std::string aborted_;
};

bool NcclWork::test() { return c_.test(*this); }
void NcclWork::wait() { c_.wait(*this); }

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts) {
  const int index = device.has_index() ? device.index() : ctx.device();
  require<DistError>(index >= 0, "nccl communicator (rank ", ctx.rank(), "): no CUDA device for this rank (",
                     cuda_device_count(), " visible)");
  return std::make_unique<NcclCommunicator>(ctx, static_cast<c10::DeviceIndex>(index), opts);
}

}  // namespace detail
}  // namespace mcm::dist
