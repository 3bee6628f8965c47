// Stop requests from the batch system: SIGTERM (preemption, scancel) and SIGUSR1 (Slurm's
// `--signal=USR1@T` before the time limit) set a flag that long-running loops poll at a safe
// point (a training step boundary), where the ranks agree to checkpoint and stop.
#pragma once

namespace mcm {

/// Installs the handlers while alive and restores the previous ones on destruction. The handler
/// only stores the signal number (async-signal-safe). Not copyable; one at a time per process.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  /// The first stop signal received since construction, or 0.
  int pending() const;
  /// "SIGTERM", "SIGUSR1", or "signal N".
  static const char* name(int sig);
};

}  // namespace mcm
