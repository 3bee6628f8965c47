#!/usr/bin/env bash
# Sets up, builds, then runs the embedded pipeline on configs/tiny.toml into runs/tiny:
# synth (1 rank), prep, teacher and distill (2 ranks under mpirun), then verifies the run's manifest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
./scripts/setup.sh
RUN="${1:-runs/tiny}"
echo "[quickstart] synth -> $RUN/data"
build/mcm synth --config configs/tiny.toml --set run.dir="$RUN"
echo "[quickstart] prep on 2 ranks -> $RUN/prep"
mpirun -n 2 build/mcm prep --config configs/tiny.toml --set run.dir="$RUN"
echo "[quickstart] teacher on 2 ranks -> $RUN/teacher (about 18 minutes on 2 cores)"
mpirun -n 2 build/mcm teacher --config configs/tiny.toml --set run.dir="$RUN"
echo "[quickstart] distill on 2 ranks -> $RUN/distill/student (about 5 minutes on 2 cores)"
mpirun -n 2 build/mcm distill --config configs/tiny.toml --set run.dir="$RUN"
build/mcm manifest verify "$RUN"
build/mcm manifest show "$RUN" | head -40
