// The tiny, stable CLI of every stage: mcm <stage> --config F [--config overlay]... [--set k=v]... [--dry-run]
// [--part I/N]
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mcm::app {

struct StageArgs {
  std::vector<std::string> configs;
  std::vector<std::string> sets;
  bool dry_run = false;
  bool help = false;
  int64_t part_index = 0, part_count = 1;  ///< --part I/N (stages that split their work: prep)
};

/// Parses argv after the stage name; throws ConfigError on unknown flags or missing values.
StageArgs parse_stage_args(int argc, char** argv, int first);

}  // namespace mcm::app
