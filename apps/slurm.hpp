// `mcm slurm plan|submitted`: what slurm/submit.sh asks of mcm (apps/slurm.cpp).
#pragma once

namespace mcm::app {

/// argv as main's, the subcommand at argv[1] ("slurm"). Returns the exit code.
int run_slurm(int argc, char** argv);

}  // namespace mcm::app
