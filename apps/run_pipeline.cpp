// `mcm run`: every stage in order, each launched as its own job (`pipeline.launcher -n ranks mcm
// <stage> ...`, or the binary itself for one rank), so a stage is exactly what a user or a Slurm
// script runs. A stage whose latest record for the same configuration is complete, with its
// outputs still on disk, is skipped while every stage before it was; an interrupted or failed one
// runs again and resumes from its checkpoints or reuses its finished files, and the stages after
// it run too (each reusing what is still up to date). The LCM baseline is a second `mcm distill` into
// sample.baseline with motion "raw" and no discriminator.
#include "apps/run_pipeline.hpp"

#include <algorithm>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "apps/cli.hpp"
#include "apps/plan.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "stages/stage_table.hpp"

extern char** environ;

namespace mcm::app {
namespace {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

std::string self_exe() {
  std::error_code ec;
  auto p = stdfs::read_symlink("/proc/self/exe", ec);
  require<IoError>(!ec, "mcm run: cannot find its own executable (/proc/self/exe): ", ec.message());
  return p.string();
}

// Runs argv, inheriting stdout/stderr; returns the exit status (128 + signal when killed).
int spawn_wait(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  require<IoError>(rc == 0, "mcm run: cannot start ", args[0], ": ", errno_text(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    require<IoError>(errno == EINTR, "mcm run: waitpid: ", errno_text(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int run_pipeline(int argc, char** argv) {
  StageArgs args;
  config::Config cfg;
  try {
    args = parse_stage_args(argc, argv, 2);
    if (args.help) {
      std::fprintf(stderr, "usage: mcm run --config FILE [--config OVERLAY]... [--set key=value]... [--dry-run]\n"
                           "runs pipeline.stages in order with pipeline.ranks ranks each, skipping complete ones;\n"
                           "--dry-run prints which stages are complete and the command of each that would run\n");
      return 0;
    }
    require<ConfigError>(args.part_count == 1, "--part is for one prep task, not for mcm run");
    std::vector<stdfs::path> files(args.configs.begin(), args.configs.end());
    cfg = config::load(files, args.sets);
  } catch (const Error& e) {
    std::fprintf(stderr, "mcm run: %s\n", e.what());
    return 2;
  }
  const auto& ps = cfg.section<PipelineSection>();
  const stdfs::path run_dir = cfg.run.dir;
  std::vector<PlannedStage> plan;
  try {
    plan = plan_pipeline(args, cfg);
  } catch (const Error& e) {
    std::fprintf(stderr, "mcm run: %s\n", e.what());
    return dynamic_cast<const ConfigError*>(&e) ? 2 : 1;
  }
  const std::string exe = self_exe();
  const auto t_run = std::chrono::steady_clock::now();
  const size_t n = plan.size();
  for (size_t k = 0; k < n; ++k) {
    const PlannedStage& p = plan[k];
    const std::string& name = p.name;
    std::printf("[mcm run] stage %zu/%zu: %s", k + 1, n, name.c_str());
    if (p.complete) {
      std::printf(": complete (record %s), skipped\n", p.record.c_str());
      std::fflush(stdout);
      continue;
    }
    std::vector<std::string> cmd;
    if (ps.ranks > 1) {
      cmd = {ps.launcher, "-n", std::to_string(ps.ranks)};
      cmd.insert(cmd.end(), ps.launcher_args.begin(), ps.launcher_args.end());
    }
    cmd.push_back(exe);
    cmd.push_back(p.stage);
    cmd.insert(cmd.end(), p.args.begin(), p.args.end());
    if (args.dry_run) {  // the plan only: this stage and every one after it would run
      std::string line;
      for (const auto& c : cmd) line += (line.empty() ? "" : " ") + c;
      std::printf(": would run `%s`\n", line.c_str());
      continue;
    }
    std::printf(" on %lld rank(s)\n", static_cast<long long>(ps.ranks));
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    int rc = 0;
    try {
      rc = spawn_wait(cmd);
    } catch (const Error& e) {
      std::fprintf(stderr, "mcm run: %s\n", e.what());
      return 1;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc == stages::kExitInterrupted) {
      std::fprintf(stderr,
                   "mcm run: stage %s was stopped by a signal after %.0f s and checkpointed; run the same command "
                   "again to resume it\n",
                   name.c_str(), s);
      return rc;
    }
    if (rc != 0) {
      std::fprintf(stderr,
                   "mcm run: stage %s failed (exit %d) after %.0f s; finished stages and files are kept: fix the cause "
                   "and run the same command again to resume (`mcm manifest show %s` lists what exists)\n",
                   name.c_str(), rc, s, run_dir.c_str());
      return rc;
    }
    std::printf("[mcm run] stage %zu/%zu: %s done in %.0f s\n", k + 1, n, name.c_str(), s);
    std::fflush(stdout);
  }
  if (args.dry_run) return 0;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  std::printf("[mcm run] all %zu stages complete in %.0f s: metrics %s, samples and previews %s, manifest %s\n", n, total,
              (run_dir / "eval" / "metrics.json").c_str(), (run_dir / "sample").c_str(), (run_dir / "manifest.json").c_str());
  if (std::find(ps.stages.begin(), ps.stages.end(), "report") != ps.stages.end())
    std::printf("[mcm run] report: %s (summary %s)\n", stdfs::absolute(run_dir / "report" / "index.html").c_str(),
                (run_dir / "report" / "summary.md").c_str());
  return 0;
}

}  // namespace mcm::app
