// Communicator: in-place collectives on tensors with a deadline, one backend per device type
// (MPI for CPU tensors, NCCL for CUDA tensors), chosen from a table in communicator.cpp.
// No silent hangs: every wait polls against CommOptions::timeout_s and a timeout names the
// stalled peer from the heartbeat files (watchdog.hpp).
//
// Note [why not c10d]: the torch wheel ships c10d (ProcessGroupNCCL, the DDP Reducer). We use our
// own because c10d bootstraps through a c10d Store (a TCPStore port and rendezvous beside the MPI
// job we already have), its C++ headers (torch/csrc/distributed) are not a stable API, and its
// Reducer is built around ProcessGroup and Python-side DDP; ours is one bootstrap over MPI and
// one timeout/heartbeat path for both backends, and the same reducer serves MPI and NCCL.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "dist/dist_context.hpp"

namespace mcm::dist {

class Liveness;

enum class ReduceOp { kSum, kAvg };

struct CommOptions {
  /// Deadline of every collective, counted from its launch, in seconds.
  double timeout_s = 300;
  /// Shared folder for liveness files rank<R>.json ("" = no heartbeats).
  std::filesystem::path heartbeat_dir;
  /// How often the heartbeat thread rewrites this rank's file, in seconds.
  double heartbeat_interval_s = 1.0;
};

/// Handle of an async collective. It keeps its tensors alive; it must not outlive its
/// Communicator. Dropping an unfinished Work is allowed: the communicator finishes it later.
class Work {
 public:
  virtual ~Work();
  /// Non-blocking: drives progress, true once the result is in the tensor.
  virtual bool test() = 0;
  /// Blocks until done. Throws DistError on timeout (naming the stalled peer) or peer failure.
  virtual void wait() = 0;
};

// Note [progress and threads]
// MPI is initialised THREAD_FUNNELED: every MPI call of the MPI backend must come from the thread
// that created the communicator (the main thread; it checks and throws otherwise). Open MPI only
// advances a nonblocking collective inside MPI calls, so whoever wants overlap must call
// Work::test() or Communicator::progress() now and then: the Reducer does it from every gradient
// hook (LibTorch runs CPU autograd on the thread that called backward()). The heartbeat thread
// makes no MPI call. The NCCL backend may be used from the CUDA autograd threads; its progress()
// does nothing (the GPU progresses by itself).

class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// "mpi" or "nccl".
  virtual std::string backend() const = 0;
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  const CommOptions& options() const { return opts_; }

  /// In-place all-reduce of `t` (kAvg: sum divided by the world size). `what` names the data in
  /// errors and heartbeats ("grad bucket 3").
  virtual std::unique_ptr<Work> allreduce_async(at::Tensor& t, ReduceOp op, const std::string& what) = 0;
  void allreduce(at::Tensor& t, ReduceOp op, const std::string& what);
  /// In-place broadcast of root's `t` to every rank.
  virtual std::unique_ptr<Work> broadcast_async(at::Tensor& t, int root, const std::string& what) = 0;
  void broadcast(at::Tensor& t, int root, const std::string& what);
  /// Every rank reaches this point, within the timeout.
  virtual void barrier(const std::string& what) = 0;

  /// The trainer's step, named in errors and heartbeats.
  void set_step(int64_t step);
  int64_t step() const;
  /// What this rank does between collectives ("forward", "checkpoint"), shown in heartbeats
  /// ("startup" until the first set_step, then "compute" until set).
  void set_phase(const std::string& phase);
  /// Drives pending async work (MPI: tests pending requests). See Note [progress and threads].
  void progress();

 protected:
  Communicator(const DistContext& ctx, CommOptions opts);
  virtual void progress_impl() = 0;
  Liveness& liveness() { return *live_; }
  /// "<kind> '<what>' at step S" for messages.
  std::string describe(const std::string& kind, const std::string& what, int64_t step) const;
  /// The watchdog's message for a collective that passed its deadline (names the peers).
  std::string timeout_message(const std::string& kind, const std::string& what, int64_t step) const;

 private:
  int rank_ = 0, world_ = 1;
  CommOptions opts_;
  std::unique_ptr<Liveness> live_;
};

/// The communicator for tensors on `device`: MPI for CPU, NCCL for CUDA (device ctx.device()).
/// A CUDA device in a build without NCCL is a DistError saying so.
std::unique_ptr<Communicator> make_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts);

/// All-reduce bus bandwidth in GB/s (nccl-tests' busbw: bytes * 2(n-1)/n / time), averaged over
/// `iters` sum all-reduces of `t` after one warm-up; for a bench. Collective: every rank calls it.
double measure_allreduce_gbps(Communicator& comm, at::Tensor& t, int iters);

}  // namespace mcm::dist
