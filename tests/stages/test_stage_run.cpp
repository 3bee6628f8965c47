// StageRun reuse rules in one process (a singleton MPI world): an output is reused only under the
// same stage hash, which covers the config keys the stage names and its code version.
#include <fstream>

#include "core/config.hpp"
#include "core/error.hpp"
#include "stages/stage_run.hpp"
#include "../test_util.hpp"

using namespace mcm;

TEST(StageRun, CodeVersionAndHashedKeysDecideReuse) {
  int argc = 1;
  char name[] = "test_stage_run";
  char* args[] = {name, nullptr};
  char** argv = args;
  dist::DistContext ctx(&argc, &argv);  // the only DistContext of this binary (MPI inits once)
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
