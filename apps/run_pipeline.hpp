// `mcm run`: the whole pipeline, stage by stage (apps/run_pipeline.cpp).
#pragma once

namespace mcm::app {

/// mcm run --config F [--set k=v]...: argv as main's, the subcommand at argv[1]. Returns the exit code.
int run_pipeline(int argc, char** argv);

}  // namespace mcm::app
