// What the C++ benchmarks share: the median of repeated timings, and running the PyTorch side of
// a comparison (a Python script that prints one JSON object) and reading its result.
#pragma once
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace mcm::bench {

inline double median(std::vector<double> v) {
  require<Error>(!v.empty(), "median of no values");
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Runs `cmd` in a shell and parses the JSON object it prints last (after any log lines). Error
/// naming the command when it fails or prints none.
inline nlohmann::json run_json(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  require<Error>(p != nullptr, "cannot start: ", cmd);
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  require<Error>(::pclose(p) == 0, "the PyTorch side failed: ", cmd);
  const auto at = out.find('{');
  require<Error>(at != std::string::npos, "the PyTorch side printed no result: ", cmd);
  return nlohmann::json::parse(out.substr(at));
}

}  // namespace mcm::bench
