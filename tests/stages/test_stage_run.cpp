// StageRun in one process (a singleton MPI world): an output is reused only under the same stage
// hash, which covers the config keys the stage names and its code version; work that stopped early
// continues its own record as a new attempt (Note [attempts]).
#include <cstdlib>
#include <fstream>

#include "core/config.hpp"
#include "core/error.hpp"
#include "stages/stage_run.hpp"
#include "../test_util.hpp"

using namespace mcm;

namespace {
const dist::DistContext& world() {
  static int argc = 1;
  static char name[] = "test_stage_run";
  static char* args[] = {name, nullptr};
  static char** argv = args;
  static dist::DistContext ctx(&argc, &argv);  // the only DistContext of this binary (MPI inits once)
  return ctx;
}
}  // namespace

TEST(StageRun, CodeVersionAndHashedKeysDecideReuse) {
  const auto& ctx = world();
  auto dir = test::scratch();
  auto cfg = config::load({}, {cat("run.dir=", dir.string())});
  const auto out = dir / "demo" / "out.bin";
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    std::filesystem::create_directories(out.parent_path());
    std::ofstream(out) << "payload";
    run.record_output(out, {{"input", {{"checksum", "in-1"}}}});
    EXPECT_TRUE(run.finish({}));
  }
  EXPECT_TRUE(stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).reusable(out, "in-1"));
  EXPECT_FALSE(stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).reusable(out, "in-2"));  // input changed
  EXPECT_FALSE(stages::StageRun("demo", "2", cfg, ctx, {"run.seed"}).reusable(out, "in-1"));  // code changed
  auto other = config::load({}, {cat("run.dir=", dir.string()), "run.seed=7"});
  EXPECT_FALSE(stages::StageRun("demo", "1", other, ctx, {"run.seed"}).reusable(out, "in-1"));  // hashed key changed
  EXPECT_FALSE(stages::StageRun("demo", "1", cfg, ctx, {"run.threads"}).reusable(out, "in-1"));  // other keys hashed
  test::expect_error<ConfigError>([&] { stages::StageRun("demo", "1", cfg, ctx, {"run.sed"}); }, {"run.sed", "run.seed"});
}

TEST(StageRun, StoppedWorkContinuesItsRecordAsAnAttempt) {
  const auto& ctx = world();
  ::unsetenv("SLURM_JOB_ID");
  auto dir = test::scratch();
  auto cfg = config::load({}, {cat("run.dir=", dir.string())});
  std::filesystem::create_directories(dir / "demo");
  auto write = [&](const char* f) {
    std::ofstream(dir / "demo" / f) << f;
    return dir / "demo" / f;
  };
  auto record = [&](const std::string& id) {
    auto doc = manifest::Manifest(dir).read();
    return *manifest::find_record(doc, id);
  };
  // Interrupted (a stop signal, checkpointed): the next run of the same work continues the record.
  std::string first;
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    first = run.id();
    run.record_output(write("a"), manifest::json::object());
    run.finish({}, {{"status", "interrupted"}, {"interrupted", {{"signal", "SIGUSR1"}, {"step", 20}}}});
  }
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    EXPECT_EQ(run.id(), first);
    EXPECT_TRUE(run.reusable(dir / "demo" / "a", ""));  // the first attempt's output
    run.record_output(write("b"), manifest::json::object());
    EXPECT_TRUE(run.finish({}));
  }
  auto rec = record(first);
  EXPECT_EQ(rec["status"], "complete");
  ASSERT_EQ(rec["attempts"].size(), 2u);
  EXPECT_EQ(rec["attempts"][0]["status"], "interrupted");
  EXPECT_EQ(rec["attempts"][0]["interrupted"]["step"], 20);
  EXPECT_EQ(rec["attempts"][1]["status"], "complete");
  EXPECT_FALSE(rec.contains("interrupted"));
  EXPECT_EQ(rec["outputs"].size(), 2u);
  // Complete: a new run of it opens a record of its own.
  EXPECT_NE(stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).id(), first);

  // Killed under a Slurm job (record left "running", its journal open): the requeued job, same id,
  // continues it and keeps the killed attempt's outputs; another job does not.
  ::setenv("SLURM_JOB_ID", "4242", 1);
  std::string killed;
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    killed = run.id();
    run.record_output(write("c"), manifest::json::object());
  }  // no finish: killed
  ::setenv("SLURM_RESTART_COUNT", "1", 1);
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    EXPECT_EQ(run.id(), killed);
    run.record_output(write("d"), manifest::json::object());
    EXPECT_TRUE(run.finish({}));
  }
  rec = record(killed);
  EXPECT_EQ(rec["outputs"].size(), 2u);  // c, folded from the killed attempt's journal, and d
  ASSERT_EQ(rec["attempts"].size(), 2u);
  EXPECT_EQ(rec["attempts"][1]["slurm"]["SLURM_RESTART_COUNT"], "1");
  EXPECT_TRUE(manifest::verify(dir).empty());
  std::string other;
  {
    stages::StageRun run("demo", "1", cfg, ctx, {"run.seed"});
    other = run.id();
  }  // killed again
  ::setenv("SLURM_JOB_ID", "4243", 1);
  EXPECT_NE(stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).id(), other);  // another job: maybe alive
  ::unsetenv("SLURM_JOB_ID");
  ::unsetenv("SLURM_RESTART_COUNT");
  std::string bare;
  { bare = stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).id(); }  // killed outside Slurm
  EXPECT_NE(stages::StageRun("demo", "1", cfg, ctx, {"run.seed"}).id(), bare);

  // Parts (prep's job array) are separate work: an interrupted part 1 is not continued by part 0.
  auto part1 = cfg;
  part1.part = {1, 2};
  std::string p1;
  {
    stages::StageRun run("demo", "1", part1, ctx, {"run.seed"});
    p1 = run.id();
    run.finish({}, {{"status", "interrupted"}});
  }
  auto part0 = cfg;
  part0.part = {0, 2};
  EXPECT_NE(stages::StageRun("demo", "1", part0, ctx, {"run.seed"}).id(), p1);
  EXPECT_EQ(stages::StageRun("demo", "1", part1, ctx, {"run.seed"}).id(), p1);
  EXPECT_EQ(record(p1)["part"]["index"], 1);
}
