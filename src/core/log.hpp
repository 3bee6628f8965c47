// Rank-tagged leveled logger for people (metrics for machines live in metrics.hpp).
// By default only rank 0 prints info; warnings and errors print on every rank.
#pragma once
#include <string>

#include "core/error.hpp"

namespace mcm::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

/// Sets this process's rank tag and whether non-zero ranks print info/debug lines.
void set_rank(int rank, int world_size);
void set_level(Level level);
void set_all_ranks(bool all);
/// Parses "debug", "info", "warn", "error"; throws ConfigError otherwise.
Level parse_level(const std::string& name);

void write(Level level, const std::string& msg);

template <class... Args> void debug(const Args&... a) { write(Level::debug, cat(a...)); }
template <class... Args> void info(const Args&... a) { write(Level::info, cat(a...)); }
template <class... Args> void warn(const Args&... a) { write(Level::warn, cat(a...)); }
template <class... Args> void error(const Args&... a) { write(Level::error, cat(a...)); }

}  // namespace mcm::log
