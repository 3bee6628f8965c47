// Reducer: bucket assignment, post-accumulate-grad hooks, in-order launches, finish and stats.
#include "dist/reducer.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <cstring>
#include <map>
#include <tuple>

#include "core/error.hpp"

namespace mcm::dist {

// Note [bucket order]
// Buckets hold the parameters in reverse registration order (backward produces the last layers'
// gradients first), a small first bucket so communication starts early, then bucket_mb each,
// split by dtype and device. They are launched strictly in bucket-index order, on every rank,
// even when a later bucket is ready first: collectives must be issued in the same order on all
// ranks (MPI matches them by order; NCCL would deadlock otherwise), and readiness differs across
// ranks (unused parameters, timing). A bucket whose parameter gets no gradient in this backward
// therefore holds back the launches behind it until finish(): put rarely used parameters early
// in registration order so they land in the last bucket.

namespace {
/// AccumulateGrad post hook: tells the reducer that the parameter's .grad is complete.
struct GradReadyHook final : torch::autograd::FunctionPostHook {
  GradReadyHook(Reducer* r, size_t i) : reducer(r), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer->on_grad_ready(index);
    return outputs;
  }
  Reducer* reducer;
  size_t index;
};

constexpr double kMiB = 1024.0 * 1024.0;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
}  // namespace

Reducer::Reducer(std::vector<std::pair<std::string, at::Tensor>> params, Communicator& comm, ReducerOptions opts)
    : comm_(comm), opts_(opts) {
  require<DistError>(opts_.first_bucket_mb > 0 && opts_.bucket_mb > 0, "reducer (rank ", comm_.rank(),
                     "): bucket sizes must be > 0 MiB, got first_bucket_mb=", opts_.first_bucket_mb,
                     " bucket_mb=", opts_.bucket_mb);
  for (auto& [name, t] : params) {
    require<DistError>(t.defined() && t.requires_grad() && t.is_leaf(), "reducer (rank ", comm_.rank(), "): parameter ",
                       name, " must be a defined leaf tensor with requires_grad");
    auto& p = params_.emplace_back();
    p.name = name;
    p.tensor = t;
  }
  assign_buckets();
  check_same_layout_as_root();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    p.accumulator = torch::autograd::impl::grad_accumulator(p.tensor);
    require<DistError>(p.accumulator != nullptr, "reducer (rank ", comm_.rank(), "): parameter ", p.name,
                       " has no gradient accumulator");
    p.hook_key = p.accumulator->add_post_hook(std::make_unique<GradReadyHook>(this, i));
  }
}

Reducer::~Reducer() {
  for (auto& p : params_)
    if (p.accumulator) p.accumulator->del_post_hook(p.hook_key);
}

void Reducer::assign_buckets() {
  // Note [bucket order]: one open bucket per (dtype, device); walk the parameters backwards.
  using Key = std::tuple<int, int, int>;  // (dtype, device type, device index)
  std::map<Key, std::pair<size_t, double>> open;  // key -> (bucket, bytes so far)
  std::map<Key, bool> had_first;
  for (size_t k = params_.size(); k-- > 0;) {
    auto& p = params_[k];
    const Key key{static_cast<int>(p.tensor.scalar_type()), static_cast<int>(p.tensor.device().type()),
                  static_cast<int>(p.tensor.device().index())};
    auto it = open.find(key);
    if (it == open.end()) {
      it = open.emplace(key, std::make_pair(buckets_.size(), 0.0)).first;
      buckets_.emplace_back();
    }
    auto& [bucket, bytes] = it->second;
    p.bucket = bucket;
    buckets_[bucket].params.push_back(k);
    bytes += static_cast<double>(p.tensor.numel()) * static_cast<double>(p.tensor.element_size());
    if (bytes >= (had_first[key] ? opts_.bucket_mb : opts_.first_bucket_mb) * kMiB) {
      open.erase(it);
      had_first[key] = true;
    }
  }
  for (auto& b : buckets_) {
    int64_t off = 0;
    for (size_t j : b.params) {
      params_[j].offset = off;
      off += params_[j].tensor.numel();
    }
    const auto& t0 = params_[b.params.front()].tensor;
    b.flat = at::zeros({off}, t0.options().requires_grad(false));
  }
  stats_.buckets = last_.buckets = static_cast<int64_t>(buckets_.size());
}

void Reducer::check_same_layout_as_root() {
  if (comm_.world_size() == 1 || buckets_.empty()) return;
  uint64_t h = 1469598103934665603ull;
  for (auto& p : params_) {
    h = fnv1a(h, p.name.data(), p.name.size() + 1);
    for (auto s : p.tensor.sizes()) h = fnv1a(h, &s, sizeof s);
    const int dt = static_cast<int>(p.tensor.scalar_type());
    h = fnv1a(h, &dt, sizeof dt);
  }
  int64_t mine = 0;
  std::memcpy(&mine, &h, sizeof mine);
  auto sig = at::full({1}, mine, buckets_.front().flat.options().dtype(at::kLong));
  comm_.broadcast(sig, 0, "reducer parameter layout");
  const int64_t root = sig.cpu().item<int64_t>();
  require<DistError>(root == mine, "reducer (rank ", comm_.rank(), "): the parameters (", params_.size(),
                     " names, shapes, dtypes) differ from rank 0's; every rank must register the same model");
}

at::Tensor Reducer::slice(const Param& p) {
  return buckets_[p.bucket].flat.narrow(0, p.offset, p.tensor.numel());
}

void Reducer::prepare(bool sync) {
  std::lock_guard lk(mu_);
  require<DistError>(mode_ != Mode::kSync || ready_count_ == 0, "reducer (rank ", comm_.rank(), ", step ", comm_.step(),
                     "): prepare() after a synced backward without finish(); call finish() after every backward "
                     "that followed prepare(true)");
  mode_ = sync ? Mode::kSync : Mode::kNoSync;
  if (!sync) return;
  for (auto& p : params_) p.ready = false;
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.ready = false;
    b.work.reset();
    b.done = false;
  }
  next_launch_ = 0;
  ready_count_ = 0;
  stats_ = Stats{};
  stats_.buckets = static_cast<int64_t>(buckets_.size());
}

void Reducer::on_grad_ready(size_t index) {
  std::lock_guard lk(mu_);
  if (mode_ != Mode::kSync) return;  // accumulation micro-batch, or a backward outside our cycle
  auto& p = params_[index];
  require<DistError>(!p.ready, "reducer (rank ", comm_.rank(), ", step ", comm_.step(), "): parameter ", p.name,
                     " got its gradient twice in one backward (backward called twice after one prepare(true)?)");
  const auto& g = p.tensor.grad();
  require<DistError>(g.defined() && !g.is_sparse(), "reducer (rank ", comm_.rank(), "): parameter ", p.name,
                     " has no dense gradient after accumulation");
  slice(p).copy_(g.reshape({-1}));
  p.ready = true;
  ++ready_count_;
  auto& b = buckets_[p.bucket];
  if (--b.pending == 0) {
    b.ready = true;
    launch_ready(/*in_backward=*/true);
  }
  poll_launched();
}

void Reducer::launch_ready(bool in_backward) {
  // Note [bucket order]: strictly in index order.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready) {
    auto& b = buckets_[next_launch_];
    b.launched_at = Clock::now();
    b.work = comm_.allreduce_async(b.flat, ReduceOp::kAvg, cat("grad bucket ", next_launch_));
    if (in_backward) ++stats_.buckets_launched_in_backward;
    ++next_launch_;
  }
}

void Reducer::poll_launched() {
  // Note [progress and threads]: Open MPI advances the launched buckets only inside MPI calls.
  comm_.progress();
  for (size_t i = 0; i < next_launch_; ++i) {
    auto& b = buckets_[i];
    if (!b.done && b.work->test()) {
      b.done = true;
      b.done_at = Clock::now();
    }
  }
}

void Reducer::finish() {
  std::lock_guard lk(mu_);
  if (mode_ == Mode::kNoSync) {
    mode_ = Mode::kIdle;
    return;
  }
  require<DistError>(mode_ == Mode::kSync, "reducer (rank ", comm_.rank(), ", step ", comm_.step(),
                     "): finish() without prepare(true) before backward");
  const auto t0 = Clock::now();
  // Parameters without a gradient in this backward: their .grad so far (earlier micro-batches) or zeros.
  for (auto& p : params_) {
    if (p.ready) continue;
    const auto& g = p.tensor.grad();
    if (g.defined())
      slice(p).copy_(g.reshape({-1}));
    else
      slice(p).zero_();
    p.ready = true;
    auto& b = buckets_[p.bucket];
    if (--b.pending == 0) b.ready = true;
  }
  launch_ready(/*in_backward=*/false);
  for (auto& b : buckets_) {
    if (b.done) continue;
    b.work->wait();
    b.done = true;
    b.done_at = Clock::now();
  }
  stats_.exposed_wait_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // Busy time: the union of the buckets' launch -> completion intervals (launched in order).
  Clock::time_point covered{};
  for (auto& b : buckets_) {
    const auto from = std::max(b.launched_at, covered);
    if (b.done_at > from) stats_.total_comm_s += std::chrono::duration<double>(b.done_at - from).count();
    covered = std::max(covered, b.done_at);
  }
  for (auto& p : params_) {
    auto avg = slice(p).view(p.tensor.sizes());
    auto& g = p.tensor.mutable_grad();
    if (g.defined())
      g.copy_(avg);
    else
      g = avg.clone();
  }
  for (auto& b : buckets_) b.work.reset();
  ready_count_ = 0;
  last_ = stats_;
  mode_ = Mode::kIdle;
}

Reducer::Stats Reducer::last_stats() const {
  std::lock_guard lk(mu_);
  return last_;
}

std::vector<std::vector<std::string>> Reducer::bucket_layout() const {
  std::vector<std::vector<std::string>> out;
  for (auto& b : buckets_) {
    out.emplace_back();
    for (size_t j : b.params) out.back().push_back(params_[j].name);
  }
  return out;
}

}  // namespace mcm::dist
