// mcm: one executable, one subcommand per stage (a table), each a thin main over run_<stage>.
#include <cstdio>
#include <cstring>
#include <iostream>

#include "apps/cli.hpp"
#include "apps/run_pipeline.hpp"
#include "apps/slurm.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/manifest.hpp"
#include "dist/dist_context.hpp"
#include "stages/stage_table.hpp"

namespace {
using Stage = mcm::stages::StageDef;

void usage() {
  std::fprintf(stderr, "usage: mcm <stage> --config FILE [--config OVERLAY]... [--set key=value]... [--dry-run] [--part I/N]\n"
                       "       mcm run --config FILE [--set key=value]...   (every stage in order)\n"
                       "       mcm manifest verify RUN_DIR\n       mcm manifest show RUN_DIR [OUTPUT]\n"
                       "       mcm slurm plan|submitted ...   (slurm/submit.sh's helpers)\n\nstages:\n");
  for (auto& s : mcm::stages::stage_table()) std::fprintf(stderr, "  %-10s %s\n", s.name.c_str(), s.help.c_str());
}

int run_stage(const Stage& st, int argc, char** argv) {
  mcm::config::Config cfg;
  try {
    auto args = mcm::app::parse_stage_args(argc, argv, 2);
    if (args.help) { usage(); return 0; }
    std::vector<std::filesystem::path> files(args.configs.begin(), args.configs.end());
    cfg = mcm::config::load(files, args.sets);
    if (args.part_count > 1 && !st.splits)
      throw mcm::ConfigError(mcm::cat("--part: ", st.name, " does not split its work into parts (prep does)"));
    cfg.part = {args.part_index, args.part_count};
    if (args.dry_run) {
      std::cout << cfg.to_toml();
      if (auto fn = mcm::stages::find_dry_run(st.name)) return fn(cfg);
      return 0;
    }
  } catch (const mcm::Error& e) {
    std::fprintf(stderr, "mcm %s: %s\n", st.name.c_str(), e.what());
    return 2;
  }
  mcm::dist::DistContext ctx(&argc, &argv);
  mcm::log::set_rank(ctx.rank(), ctx.world_size());
  mcm::log::set_level(mcm::log::parse_level(cfg.run.log_level));
  try {
    if (ctx.is_root()) mcm::log::info(st.name.c_str(), ": run ", cfg.run.dir, ", ", ctx.world_size(), " rank(s), config ", cfg.hash());
    return st.run(cfg, ctx);
  } catch (const std::exception& e) {
    mcm::log::error(st.name.c_str(), " (rank ", ctx.rank(), "): ", e.what());
    ctx.abort(1);  // other ranks may wait in a collective: take them down too
  }
}

int run_manifest(int argc, char** argv) {
  if (argc < 4 || (std::strcmp(argv[2], "verify") != 0 && std::strcmp(argv[2], "show") != 0)) {
    usage();
    return 2;
  }
  try {
    if (std::strcmp(argv[2], "verify") == 0) {
      auto problems = mcm::manifest::verify(argv[3]);
      for (auto& p : problems) std::fprintf(stderr, "manifest verify: %s\n", p.c_str());
      if (problems.empty()) std::printf("manifest verify %s: OK\n", argv[3]);
      return problems.empty() ? 0 : 1;
    }
    std::cout << mcm::manifest::show(argv[3], argc > 4 ? argv[4] : "");
    return 0;
  } catch (const mcm::Error& e) {
    std::fprintf(stderr, "mcm manifest: %s\n", e.what());
    return 1;
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "manifest")) return run_manifest(argc, argv);
  if (!std::strcmp(argv[1], "run")) return mcm::app::run_pipeline(argc, argv);
  if (!std::strcmp(argv[1], "slurm")) return mcm::app::run_slurm(argc, argv);
  if (const Stage* s = mcm::stages::find_stage(argv[1])) return run_stage(*s, argc, argv);
  std::fprintf(stderr, "mcm: unknown stage \"%s\"\n", argv[1]);
  usage();
  return 2;
}
