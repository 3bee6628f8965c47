// Communicator base (step, phase, watchdog messages), the backend table and the bandwidth probe.
#include "dist/communicator.hpp"

#include <ATen/ATen.h>

#include <cstdio>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "dist/comm_backends.hpp"
#include "dist/watchdog.hpp"

namespace mcm::dist {

Work::~Work() = default;

Communicator::Communicator(const DistContext& ctx, CommOptions opts)
    : rank_(ctx.rank()), world_(ctx.world_size()), opts_(std::move(opts)) {
  require<DistError>(opts_.timeout_s > 0, "communicator (rank ", rank_, "): timeout_s must be > 0, got ", opts_.timeout_s);
  live_ = std::make_unique<Liveness>(rank_, world_, ctx.hostname(), opts_.heartbeat_dir, opts_.heartbeat_interval_s);
}

Communicator::~Communicator() = default;

void Communicator::allreduce(at::Tensor& t, ReduceOp op, const std::string& what) {
  allreduce_async(t, op, what)->wait();
}
void Communicator::broadcast(at::Tensor& t, int root, const std::string& what) {
  broadcast_async(t, root, what)->wait();
}

void Communicator::set_step(int64_t step) { live_->set_step(step); }
int64_t Communicator::step() const { return live_->step(); }
void Communicator::set_phase(const std::string& phase) { live_->set_phase(phase); }
void Communicator::progress() { progress_impl(); }

std::string Communicator::describe(const std::string& kind, const std::string& what, int64_t step) const {
  return cat(kind, " '", what, "' at step ", step);
}

std::string Communicator::timeout_message(const std::string& kind, const std::string& what, int64_t step) const {
  char t[32];
  std::snprintf(t, sizeof t, "%g", opts_.timeout_s);
  return cat(describe(kind, what, step), " timed out after ", t, " s on rank ", rank_, ": ",
             live_->diagnose(opts_.timeout_s));
}

namespace {
using Factory = std::unique_ptr<Communicator> (*)(const DistContext&, c10::Device, const CommOptions&);
struct BackendDef {
  const char* name;
  c10::DeviceType device;
  Factory make;
};
// The backend table: one row per backend file.
const BackendDef kBackends[] = {
    {"mpi", c10::DeviceType::CPU, detail::make_mpi_communicator},
#if MCM_WITH_NCCL
    {"nccl", c10::DeviceType::CUDA, detail::make_nccl_communicator},
#endif
};
}  // namespace

std::unique_ptr<Communicator> make_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts) {
  for (const auto& b : kBackends)
    if (b.device == device.type()) return b.make(ctx, device, opts);
  if (device.is_cuda())
    throw DistError(cat("communicator for ", device, " (rank ", ctx.rank(),
                        "): this build lacks NCCL (MCM_WITH_NCCL is off), so CUDA tensors cannot be reduced"));
  throw DistError(cat("communicator for ", device, " (rank ", ctx.rank(), "): no backend for this device type"));
}

double measure_allreduce_gbps(Communicator& comm, at::Tensor& t, int iters) {
  require<DistError>(iters > 0, "measure_allreduce_gbps (rank ", comm.rank(), "): iters must be > 0");
  comm.allreduce(t, ReduceOp::kSum, "bandwidth warm-up");
  comm.barrier("bandwidth start");
  const auto t0 = detail::Clock::now();
  for (int i = 0; i < iters; ++i) comm.allreduce(t, ReduceOp::kSum, "bandwidth probe");
  const double s = detail::seconds_since(t0) / iters;
  const double bytes = static_cast<double>(t.numel()) * static_cast<double>(t.element_size());
  const int n = comm.world_size();
  // Bus bandwidth is what a ring moves per rank; with one rank report the algorithm bandwidth.
  const double factor = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  return bytes * factor / s / 1e9;
}

}  // namespace mcm::dist
