// Progress meter implementation.
#include "core/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace mcm {

std::string format_duration(double s) {
  if (s < 0) s = 0;
  char buf[32];
  long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

Progress::Progress(std::string what, int64_t total, std::string unit, bool enabled, double interval_s)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0), interval_(interval_s), start_(Clock::now()), last_print_(start_) {}

std::string Progress::line() const {
  double el = std::chrono::duration<double>(Clock::now() - start_).count();
  double rate = el > 0 ? done_ / el : 0.0;
  char buf[256];
  if (total_ > 0) {
    double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
    std::snprintf(buf, sizeof buf, "%s: %lld/%lld %s (%.0f%%) %.2f %s/s elapsed %s ETA %s", what_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                  100.0 * done_ / total_, rate, unit_.c_str(), format_duration(el).c_str(),
                  format_duration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%s: %lld %s %.2f %s/s elapsed %s", what_.c_str(),
                  static_cast<long long>(done_), unit_.c_str(), rate, unit_.c_str(), format_duration(el).c_str());
  }
  return buf;
}

void Progress::add(int64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = Clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_ ? since >= 0.2 : since >= interval_) {
    last_print_ = now;
    if (tty_) std::fprintf(stderr, "\r%s\x1b[K", line().c_str());
    else std::fprintf(stderr, "%s\n", line().c_str());
    std::fflush(stderr);
  }
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (tty_) std::fprintf(stderr, "\r%s\x1b[K\n", line().c_str());
  else std::fprintf(stderr, "%s\n", line().c_str());
  std::fflush(stderr);
}

}  // namespace mcm
