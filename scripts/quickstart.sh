#!/usr/bin/env bash
# Sets up, builds, then runs the whole embedded pipeline on configs/tiny.toml into runs/tiny with
# `mcm run` (synth, prep, teacher, distill, the LCM baseline, sample, eval, report; 2 ranks each under
# mpiexec, pipeline.ranks), then verifies the run's manifest. Re-running skips what is complete.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
./scripts/setup.sh
RUN="${1:-runs/tiny}"
echo "[quickstart] mcm run -> $RUN (about 9 minutes on 2 cores: the teacher takes 4)"
build/mcm run --config configs/tiny.toml --set run.dir="$RUN"
build/mcm manifest verify "$RUN"
build/mcm manifest show "$RUN" | head -40
