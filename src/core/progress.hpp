// Progress meter with rate and ETA. On a terminal it redraws one line; otherwise (Slurm logs)
// it prints a plain line at most every `interval` seconds, and always at the end.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mcm {

class Progress {
 public:
  /// total <= 0 means unknown (no ETA). Only prints when `enabled` (typically rank 0).
  Progress(std::string what, int64_t total, std::string unit, bool enabled = true, double interval_s = 10.0);
  /// Advances by n and prints if due.
  void add(int64_t n = 1);
  /// Prints the final line (idempotent).
  void finish();
  int64_t done() const { return done_; }
  /// The line that would be printed now, e.g. "prep: 12/48 clips (25%) 3.1 clips/s ETA 12s".
  std::string line() const;

 private:
  using Clock = std::chrono::steady_clock;
  std::string what_, unit_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  double interval_;
  Clock::time_point start_, last_print_;
};

/// Formats seconds as "1h02m", "3m05s" or "12s".
std::string format_duration(double seconds);

}  // namespace mcm
