#include "core/signals.hpp"

#include <csignal>
#include <stdexcept>

namespace mcm {
namespace {
volatile std::sig_atomic_t g_pending = 0;
bool g_installed = false;
struct sigaction g_old_term, g_old_usr1;

void on_stop(int sig) {
  if (g_pending == 0) g_pending = sig;
}
}  // namespace

StopSignals::StopSignals() {
  if (g_installed) throw std::logic_error("StopSignals: already installed in this process");
  g_pending = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // interrupted syscalls (file writes, MPI polling) resume
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGUSR1, &sa, &g_old_usr1);
  g_installed = true;
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGUSR1, &g_old_usr1, nullptr);
  g_installed = false;
}

int StopSignals::pending() const { return g_pending; }

const char* StopSignals::name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal";
  }
}

}  // namespace mcm
