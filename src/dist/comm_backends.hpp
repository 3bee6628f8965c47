// Internal: the factories of the communicator backends, one per file, listed in the backend
// table of communicator.cpp (STYLE.md 3), and the helpers they share.
#pragma once
#include <chrono>
#include <memory>
#include <thread>

#include "core/build_info.hpp"
#include "dist/communicator.hpp"

namespace mcm::dist::detail {

std::unique_ptr<Communicator> make_mpi_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts);
#if MCM_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(const DistContext& ctx, c10::Device device, const CommOptions& opts);
#endif

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// Poll pacing for waits: poll continuously (yielding the core) for `spin_s`, then pause
/// `sleep_us` between polls, so a wait for a stalled peer costs little CPU. Open MPI moves a large
/// message one fragment per progress call on each side, so MPI waits spin long enough for any
/// healthy transfer; the GPU progresses alone, so NCCL waits spin briefly.
class Backoff {
 public:
  Backoff(double spin_s, int sleep_us) : spin_until_(Clock::now() + to_duration(spin_s)), sleep_us_(sleep_us) {}
  void pause() const {
    if (Clock::now() < spin_until_)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
  }
  static Clock::duration to_duration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

 private:
  Clock::time_point spin_until_;
  int sleep_us_;
};

}  // namespace mcm::dist::detail
