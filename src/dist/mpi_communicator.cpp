// The MPI backend: nonblocking collectives (MPI_Iallreduce/Ibcast/Ibarrier) on CPU tensors, on
// a communicator of its own (a dup of the world), every wait polled against the deadline.
// Note [half types over MPI]: MPI has no bfloat16/half; those tensors are reduced through an fp32
// copy (sum, and the kAvg division, in fp32, rounded once when copied back), which is also more
// accurate than a custom MPI_Op that would round at every reduction step. Broadcast moves bytes.
#include <ATen/ATen.h>

#include <climits>
#include <deque>

#include "core/error.hpp"
#include "dist/comm_backends.hpp"
#include "dist/watchdog.hpp"

namespace mcm::dist::detail {
namespace {

/// One nonblocking collective in flight. Shared by its Work and the communicator's pending list,
/// so a Work dropped early (an exception) keeps its buffers alive until MPI is done with them.
struct MpiOp {
  std::string kind, what;
  int64_t step = 0;
  Clock::time_point start;
  std::vector<MPI_Request> reqs;
  at::Tensor target;  // the caller's tensor
  at::Tensor buf;     // what MPI reads and writes: target itself, or a contiguous / fp32 copy
  bool divide = false;
  bool done = false;
};

MPI_Datatype mpi_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
  }
}

/// Calls issue(ptr, count) for chunks of at most INT_MAX items (MPI counts are int).
template <class F>
void for_chunks(void* base, int64_t items, size_t item_bytes, F issue) {
  auto* p = static_cast<char*>(base);
  for (int64_t off = 0; off < items; off += INT_MAX) {
    const int64_t n = std::min<int64_t>(INT_MAX, items - off);
    issue(p + off * static_cast<int64_t>(item_bytes), static_cast<int>(n));
  }
}

class MpiCommunicator;

class MpiWork final : public Work {
 public:
  MpiWork(MpiCommunicator& c, std::shared_ptr<MpiOp> op) : c_(c), op_(std::move(op)) {}
  bool test() override;
  void wait() override;

 private:
  MpiCommunicator& c_;
  std::shared_ptr<MpiOp> op_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const DistContext& ctx, const CommOptions& opts)
      : Communicator(ctx, opts), owner_(std::this_thread::get_id()) {
    MPI_Comm dup = MPI_COMM_NULL;
    MCM_MPI_CHECK(MPI_Comm_dup(ctx.world(), &dup));
    comm_ = Comm(dup);
    MCM_MPI_CHECK(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  }

  ~MpiCommunicator() override {
    // An unfinished collective cannot be cancelled (MPI forbids it) and MPI may still write into
    // its buffer: keep those buffers alive for the life of the process. Only error paths get
    // here with work pending, and they end in MPI_Abort.
    for (auto& op : pending_)
      if (!op->done) new std::shared_ptr<MpiOp>(op);  // deliberate leak, see above
  }

  std::string backend() const override { return "mpi"; }

  std::unique_ptr<Work> allreduce_async(at::Tensor& t, ReduceOp rop, const std::string& what) override {
    auto op = start("allreduce", what, t);
    const bool half = t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
    if (!half && mpi_type(t.scalar_type()) == MPI_DATATYPE_NULL)
      throw DistError(cat(describe(op->kind, what, op->step), " (rank ", rank(), "): dtype ", t.scalar_type(),
                          " is not supported (float, double, bfloat16, half, int32, int64)"));
    if (rop == ReduceOp::kAvg && !t.is_floating_point())
      throw DistError(cat(describe(op->kind, what, op->step), " (rank ", rank(), "): kAvg needs a floating point tensor, got ",
                          t.scalar_type()));
    // Note [half types over MPI].
    op->buf = half ? t.to(at::kFloat).contiguous() : t.contiguous();
    op->divide = rop == ReduceOp::kAvg && world_size() > 1;
    const MPI_Datatype type = mpi_type(op->buf.scalar_type());
    for_chunks(op->buf.data_ptr(), op->buf.numel(), op->buf.element_size(), [&](void* p, int n) {
      op->reqs.emplace_back(MPI_REQUEST_NULL);
      check(MPI_Iallreduce(MPI_IN_PLACE, p, n, type, MPI_SUM, comm_.get(), &op->reqs.back()), "MPI_Iallreduce", *op);
    });
    return launched(std::move(op));
  }

  std::unique_ptr<Work> broadcast_async(at::Tensor& t, int root, const std::string& what) override {
    auto op = start("broadcast", what, t);
    require<DistError>(root >= 0 && root < world_size(), describe(op->kind, what, op->step), " (rank ", rank(),
                       "): root ", root, " is not a rank of a world of ", world_size());
    op->buf = t.contiguous();
    for_chunks(op->buf.data_ptr(), op->buf.nbytes(), 1, [&](void* p, int n) {
      op->reqs.emplace_back(MPI_REQUEST_NULL);
      check(MPI_Ibcast(p, n, MPI_BYTE, root, comm_.get(), &op->reqs.back()), "MPI_Ibcast", *op);
    });
    return launched(std::move(op));
  }

  void barrier(const std::string& what) override {
    auto op = start("barrier", what, at::Tensor());
    op->reqs.emplace_back(MPI_REQUEST_NULL);
    check(MPI_Ibarrier(comm_.get(), &op->reqs.back()), "MPI_Ibarrier", *op);
    pending_.push_back(op);
    wait(*op);
  }

  /// MPI_Testall on the op's requests; on completion writes the result into the caller's tensor.
  bool test(MpiOp& op) {
    if (op.done) return true;
    check_thread(op.kind, op.what);
    int flag = 0;
    check(MPI_Testall(static_cast<int>(op.reqs.size()), op.reqs.data(), &flag, MPI_STATUSES_IGNORE), "MPI_Testall", op);
    if (!flag) return false;
    if (op.buf.defined()) {
      if (op.divide) op.buf.div_(world_size());
      if (!op.buf.is_same(op.target)) op.target.copy_(op.buf);
    }
    op.buf.reset();
    op.target.reset();
    op.done = true;
    return true;
  }

  /// Polls until done or past the op's deadline (counted from launch); heartbeats name the op.
  void wait(MpiOp& op) {
    if (op.done) return;
    Liveness::OpScope in_op(liveness(), cat(op.kind, " ", op.what));
    const auto deadline = op.start + Backoff::to_duration(options().timeout_s);
    const Backoff backoff(/*spin_s=*/1.0, /*sleep_us=*/100);
    while (!test(op)) {
      if (Clock::now() > deadline) throw DistError(timeout_message(op.kind, op.what, op.step));
      backoff.pause();
    }
  }

 protected:
  void progress_impl() override {
    if (pending_.empty()) return;
    check_thread("progress", "pending collectives");
    for (auto& op : pending_) test(*op);
    std::erase_if(pending_, [](const auto& op) { return op->done; });
  }

 private:
  std::shared_ptr<MpiOp> start(const char* kind, const std::string& what, const at::Tensor& t) {
    check_thread(kind, what);
    auto op = std::make_shared<MpiOp>();
    op->kind = kind;
    op->what = what;
    op->step = step();
    op->start = Clock::now();
    if (t.defined() || std::string(kind) != "barrier") {
      require<DistError>(t.defined(), describe(kind, what, op->step), " (rank ", rank(), "): undefined tensor");
      require<DistError>(t.device().is_cpu(), describe(kind, what, op->step), " (rank ", rank(),
                         "): the MPI communicator takes CPU tensors, got one on ", t.device());
      op->target = t;
    }
    // Drop finished ops so the list stays as long as what is in flight.
    std::erase_if(pending_, [](const auto& p) { return p->done; });
    return op;
  }

  std::unique_ptr<Work> launched(std::shared_ptr<MpiOp> op) {
    pending_.push_back(op);
    return std::make_unique<MpiWork>(*this, std::move(op));
  }

  void check_thread(const std::string& kind, const std::string& what) const {
    if (std::this_thread::get_id() != owner_)
      throw DistError(cat("mpi ", kind, " '", what, "' (rank ", rank(),
                          "): called from a thread other than the one that created the communicator; MPI runs "
                          "THREAD_FUNNELED (see Note [progress and threads])"));
  }

  void check(int rc, const char* call, const MpiOp& op) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw DistError(cat(call, " for ", describe(op.kind, op.what, op.step), " (rank ", rank(), "): ", std::string(msg, len)));
  }

  std::thread::id owner_;
  Comm comm_;
  std::deque<std::shared_ptr<MpiOp>> pending_;
};

bool MpiWork::test() { return c_.test(*op_); }
void MpiWork::wait() { c_.wait(*op_); }

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts) {
  return std::make_unique<MpiCommunicator>(ctx, opts);
}

}  // namespace mcm::dist::detail
