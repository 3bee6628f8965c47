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
    else if (s == "-h" || s == "--help") a.help = true;
    else throw ConfigError(cat("unknown argument \"", s, "\" (expected --config FILE, --set key=value, --dry-run)"));
  }
  require<ConfigError>(a.help || !a.configs.empty(), "missing --config FILE");
  return a;
}

}  // namespace mcm::app
