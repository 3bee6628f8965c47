// The pipeline's plan, shared by `mcm run` (apps/run_pipeline.cpp) and `mcm slurm plan`
// (apps/slurm.cpp, for slurm/submit.sh): the stages of pipeline.stages in order, each with the
// exact arguments of its `mcm <stage>` command and whether the manifest already records it
// complete. Stages are skipped only as a prefix: once one must run, every later one runs too
// (each then reuses its own outputs that are still up to date).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/cli.hpp"
#include "core/config.hpp"

namespace mcm::app {

/// [pipeline]: which stages `mcm run` and slurm/submit.sh run, and how `mcm run` launches them.
/// Launch-only: not in the config hash.
struct PipelineSection {
  static constexpr const char* kName = "pipeline";
  static constexpr bool kLaunchOnly = true;
  int64_t ranks = 2;                                   ///< mcm run: processes per stage (1: no launcher)
  std::string launcher = "mpiexec";                    ///< mcm run: MPI launcher for ranks > 1
  std::vector<std::string> launcher_args{"--oversubscribe"};  ///< mcm run: passed before the program
  std::vector<std::string> stages{"synth", "prep", "teacher", "distill", "baseline", "sample", "eval", "report"};

  void visit(config::FieldVisitor& v);
  void validate(const config::Config&) const;
};

struct PlannedStage {
  std::string name;               ///< as in pipeline.stages ("baseline" is a second distill)
  std::string stage;              ///< the subcommand: mcm <stage>
  std::vector<std::string> args;  ///< after the subcommand: --config F... --set k=v...
  std::string config_hash;        ///< of this stage's own configuration (the baseline's differs)
  bool complete = false;          ///< skipped: recorded complete (and every stage before it)
  std::string record;             ///< the complete record's id (every part's, comma-separated)
};

/// The plan for these arguments; ConfigError on a bad configuration, DataError on a corrupt manifest.
std::vector<PlannedStage> plan_pipeline(const StageArgs& args, const config::Config& cfg);

}  // namespace mcm::app
