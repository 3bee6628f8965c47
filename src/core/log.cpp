// Logger implementation: one line per call, "[time] [rank r/N] LEVEL message", to stderr.
#include "core/log.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace mcm {
std::string errno_text(int err) { return std::strerror(err); }
}  // namespace mcm

namespace mcm::log {
namespace {
int g_rank = 0;
int g_world = 1;
Level g_level = Level::info;
bool g_all_ranks = false;
std::mutex g_mutex;
const char* name(Level l) {
  switch (l) {
    case Level::debug: return "DEBUG";
    case Level::info: return "INFO ";
    case Level::warn: return "WARN ";
    case Level::error: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_rank(int rank, int world_size) { g_rank = rank; g_world = world_size; }
void set_level(Level level) { g_level = level; }
void set_all_ranks(bool all) { g_all_ranks = all; }

Level parse_level(const std::string& s) {
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn") return Level::warn;
  if (s == "error") return Level::error;
  throw ConfigError(cat("log level \"", s, "\": expected debug, info, warn or error"));
}

void write(Level level, const std::string& msg) {
  if (level < g_level) return;
  if (level < Level::warn && g_rank != 0 && !g_all_ranks) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[%s] [rank %d/%d] %s %s\n", ts, g_rank, g_world, name(level), msg.c_str());
  std::fflush(stderr);
}

}  // namespace mcm::log
