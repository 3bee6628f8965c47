// The stage table: every `mcm <stage>` in pipeline order. Each stage registers its own row with
// MCM_STAGE in the file that defines run_<stage> (and its config section with
// MCM_CONFIG_SECTION beside it), so a new stage is one new file and no edit elsewhere; the
// `mcm` main and the local runner read the table.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "dist/dist_context.hpp"

namespace mcm::stages {

/// Runs a stage on every rank; returns the process exit code (0 complete, 1 finished with
/// recorded failures, kExitInterrupted stopped early). Throws on errors that stop the stage.
using StageFn = int (*)(const config::Config&, const dist::DistContext&);

/// Exit code of a stage stopped by SIGTERM/SIGUSR1 (preemption, Slurm's warning before the time
/// limit) after it checkpointed and recorded itself "interrupted": run the same command again to
/// resume. EX_TEMPFAIL of sysexits.h; slurm/lib.sh requeues the job on it, `mcm run` stops on it.
inline constexpr int kExitInterrupted = 75;

struct StageDef {
  std::string name;  ///< the subcommand: `mcm <name>`
  int order = 0;     ///< position in the pipeline (synth 10, prep 20, teacher 30, ...)
  StageFn run = nullptr;
  std::string help;  ///< one line for `mcm --help`
  bool splits = false;  ///< takes `--part I/N` (config::Config::part): one share of its work per process group
};

/// A stage's `--dry-run` beyond printing the resolved configuration: what it can resolve without
/// running (structures, counts, estimates, consistency checks). Returns the exit code.
using DryRunFn = int (*)(const config::Config&);
/// Registers the dry run of stage `name` (MCM_STAGE_DRY_RUN); null when a stage has none.
void register_dry_run(const std::string& name, DryRunFn fn);
DryRunFn find_dry_run(std::string_view name);

/// Adds a row; a name or order registered twice is a programming error (std::logic_error).
void register_stage(StageDef def);
/// Every registered stage, in pipeline order.
std::vector<StageDef> stage_table();
/// The stage called `name`, or nullptr.
const StageDef* find_stage(std::string_view name);

// Note [stage table]: static registration needs the stage's object file in the link; stage
// folders are CMake OBJECT libraries for that reason (an unreferenced member of a static
// archive would be dropped together with its registration).
#define MCM_STAGE(NAME, ORDER, FN, HELP)                                                        \
  static const bool mcm_stage_registered_##FN = [] {                                            \
    ::mcm::stages::register_stage(::mcm::stages::StageDef{NAME, ORDER, &FN, HELP});             \
    return true;                                                                                \
  }()
#define MCM_STAGE_DRY_RUN(NAME, FN)                                                             \
  static const bool mcm_stage_dry_run_registered_##FN = [] {                                    \
    ::mcm::stages::register_dry_run(NAME, &FN);                                                 \
    return true;                                                                                \
  }()
/// A stage whose work can be split into parts run as separate jobs (`mcm prep --part I/N`).
#define MCM_SPLIT_STAGE(NAME, ORDER, FN, HELP)                                                  \
  static const bool mcm_stage_registered_##FN = [] {                                            \
    ::mcm::stages::register_stage(::mcm::stages::StageDef{NAME, ORDER, &FN, HELP, true});       \
    return true;                                                                                \
  }()

}  // namespace mcm::stages
