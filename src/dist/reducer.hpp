// Bucketed gradient reducer in the manner of PyTorch DDP (STYLE.md 11): gradients are copied into
// flat buckets as autograd accumulates them, and each full bucket is all-reduced (averaged) while
// backward goes on; finish() writes the averages back into .grad.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.hpp"

namespace torch::autograd {
struct Node;
}

namespace mcm::dist {

struct ReducerOptions {
  /// Size of the first bucket (the last parameters, whose gradients come first), MiB.
  double first_bucket_mb = 1.0;
  /// Size of the other buckets, MiB. A bucket closes at the first parameter that reaches it.
  double bucket_mb = 25.0;
};

/// Averages the gradients of `params` over the ranks of `comm`, overlapping backward.
/// Use per optimizer step: prepare(false) + backward for each non-final micro-batch, then
/// prepare(true) + backward + finish(). The hooks run on the autograd threads (see
/// Note [progress and threads] in communicator.hpp); a Reducer must not outlive comm.
class Reducer {
 public:
  /// params: (name, parameter) in registration order, leaves with requires_grad, the same
  /// names, shapes and dtypes on every rank (checked against rank 0 here: collective).
  Reducer(std::vector<std::pair<std::string, at::Tensor>> params, Communicator& comm, ReducerOptions opts = {});
  /// Removes its hooks.
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  /// Before backward(). sync=false (a non-final micro-batch of gradient accumulation): the hooks
  /// do nothing and nothing is communicated. sync=true: the hooks fill and launch buckets.
  void prepare(bool sync);
  /// After backward() when sync: launches what is not launched yet (a parameter that got no
  /// gradient contributes zeros, or its .grad from earlier micro-batches), waits for all and
  /// writes the averages into .grad (creating it where undefined). A no-op after prepare(false).
  void finish();

  struct Stats {
    /// Time finish() waited for communication (not hidden behind backward), seconds.
    double exposed_wait_s = 0;
    /// Time with a bucket in flight: the union of launch -> completion intervals, seconds
    /// (best estimate: completion is observed when a hook or finish() polls).
    double total_comm_s = 0;
    /// Buckets launched from the hooks, i.e. during backward.
    int64_t buckets_launched_in_backward = 0;
    int64_t buckets = 0;
  };
  /// The figures of the last finish().
  Stats last_stats() const;
  /// Parameter names per bucket, in launch order.
  std::vector<std::vector<std::string>> bucket_layout() const;

  /// Called by the gradient hook of parameter `index` (public for the hook only).
  void on_grad_ready(size_t index);

 private:
  using Clock = std::chrono::steady_clock;
  struct Param {
    std::string name;
    at::Tensor tensor;
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket's flat buffer, in elements
    std::shared_ptr<torch::autograd::Node> accumulator;  // kept alive so our hook stays on it
    uintptr_t hook_key = 0;
    bool ready = false;
  };
  struct Bucket {
    std::vector<size_t> params;
    at::Tensor flat;
    size_t pending = 0;
    bool ready = false;
    std::unique_ptr<Work> work;
    bool done = false;
    Clock::time_point launched_at, done_at;
  };
  enum class Mode { kIdle, kNoSync, kSync };

  void assign_buckets();
  void check_same_layout_as_root();
  void launch_ready(bool in_backward);
  void poll_launched();
  at::Tensor slice(const Param& p);

  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  Communicator& comm_;
  ReducerOptions opts_;
  mutable std::mutex mu_;
  Mode mode_ = Mode::kIdle;
  size_t next_launch_ = 0;
  size_t ready_count_ = 0;  // gradients seen by the hooks since prepare(true)
  Stats stats_, last_;
};

}  // namespace mcm::dist
