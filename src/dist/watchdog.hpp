// Watchdog pieces: this rank's liveness (step, phase, current collective) written to a heartbeat
// file by a background thread, and the diagnosis of a timed-out collective from the peers' files.
// Torch-free and MPI-free, so it is testable alone and safe off the main thread.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mcm::dist {

/// One heartbeat file: {"rank","step","op","pid","host","time"} (time: Unix seconds).
struct Heartbeat {
  int rank = -1;
  int64_t step = -1;
  std::string op;
  int64_t pid = 0;
  std::string host;
  double time = 0;
};

/// heartbeat_dir/rank<R>.json
std::filesystem::path heartbeat_path(const std::filesystem::path& dir, int rank);
/// The rank's last heartbeat, or nullopt when its file is missing or unreadable.
std::optional<Heartbeat> read_heartbeat(const std::filesystem::path& dir, int rank);
/// Writes the file atomically (tmp + rename; no fsync: liveness, not durability).
void write_heartbeat(const std::filesystem::path& dir, const Heartbeat& hb);
/// Seconds since the Unix epoch (the clock of heartbeat times).
double unix_now();

/// A heartbeat older than this is a stopped rank: well above the write interval, well below the
/// collective timeout (so a peer stopped when the collective began is stale when it times out).
double stale_after_s(double timeout_s, double interval_s);

/// The part of a timeout message about the peers, e.g. "rank 1 stopped responding (last heartbeat
/// 31.2 s ago, at step 16, in 'forward')". `beats[r]` is rank r's heartbeat (nullopt: none);
/// `self`, `step` and `op` describe the rank that timed out; `now` is unix_now().
std::string describe_peers(const std::vector<std::optional<Heartbeat>>& beats, int self, int64_t step,
                           const std::string& op, double now, double stale_after);

/// This rank's liveness: its step, its phase between collectives and the collective it waits
/// in. With a folder, a thread rewrites heartbeat_dir/rank<R>.json every interval (and once
/// more, as "exited", on destruction). The thread never calls MPI.
class Liveness {
 public:
  Liveness(int rank, int world, std::string host, std::filesystem::path dir, double interval_s);
  ~Liveness();
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  /// The first call also turns the phase "startup" into "compute".
  void set_step(int64_t step);
  int64_t step() const;
  void set_phase(std::string phase);
  /// While alive, heartbeats say the rank is in `op` (a collective it waits in).
  class OpScope {
   public:
    OpScope(Liveness& l, std::string op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;

   private:
    Liveness& l_;
  };
  /// The current op (or phase when not in a collective).
  std::string op() const;
  bool has_heartbeats() const { return !dir_.empty(); }

  /// The peers part of a timeout message: from their heartbeats, or the ranks whose state is
  /// unknown when there is no heartbeat folder.
  std::string diagnose(double timeout_s) const;

 private:
  Heartbeat snapshot() const;
  void run();

  const int rank_, world_;
  const std::string host_;
  const std::filesystem::path dir_;
  const double interval_s_;
  mutable std::mutex mu_;
  int64_t step_ = 0;
  std::string phase_ = "startup", op_;
  bool stop_ = false;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace mcm::dist
