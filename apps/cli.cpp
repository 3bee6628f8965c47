// Stage argument parsing.
#include "apps/cli.hpp"

#include "core/error.hpp"

namespace mcm::app {

StageArgs parse_stage_args(int argc, char** argv, int first) {
  StageArgs a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* flag) {
      require<ConfigError>(i + 1 < argc, flag, ": missing value");
      return std::string(argv[++i]);
    };
    if (s == "--config" || s == "-c") a.configs.push_back(value("--config"));
    else if (s.rfind("--config=", 0) == 0) a.configs.push_back(s.substr(9));
    else if (s == "--set" || s == "-s") a.sets.push_back(value("--set"));
    else if (s.rfind("--set=", 0) == 0) a.sets.push_back(s.substr(6));
    else if (s == "--dry-run") a.dry_run = true;
    else if (s == "--part" || s.rfind("--part=", 0) == 0) {
      const std::string v = s == "--part" ? value("--part") : s.substr(7);
      const size_t slash = v.find('/');
      size_t used_i = 0, used_n = 0;
      try {
        if (slash != std::string::npos) {
          a.part_index = std::stoll(v.substr(0, slash), &used_i);
          a.part_count = std::stoll(v.substr(slash + 1), &used_n);
        }
      } catch (const std::exception&) {
        used_i = 0;
      }
      require<ConfigError>(slash != std::string::npos && used_i == slash && used_n == v.size() - slash - 1 &&
                               a.part_count >= 1 && a.part_index >= 0 && a.part_index < a.part_count,
                           "--part \"", v, "\": expected I/N with 0 <= I < N (e.g. --part 3/8)");
    }
    else if (s == "-h" || s == "--help") a.help = true;
    else throw ConfigError(cat("unknown argument \"", s, "\" (expected --config FILE, --set key=value, --dry-run, --part I/N)"));
  }
  require<ConfigError>(a.help || !a.configs.empty(), "missing --config FILE");
  return a;
}

}  // namespace mcm::app
