#!/usr/bin/env bash
# The paper's ablations on the synthetic benchmark, after `mcm run` has made its run:
#   bench/ablation.sh [CONFIG...]     (default: configs/tiny.toml configs/bench.toml)
# Distils five more students from the same teacher, each differing from MCM in one thing:
#   distill_raw    motion = "raw"   (the consistency loss on the latents themselves)
#   distill_diff   motion = "diff"  (temporal differences)
#   distill_freq   motion = "freq"  (a low band of the 3-D FFT)
#   distill_nomix  mixed_prob = 0   (no mixed trajectories)
#   distill_mix01  mixed_prob = 0.1 (fewer mixed trajectories than MCM's 0.5)
# then samples them at every step count beside the others (sample.ablations), evaluates every
# method again and rebuilds the report: report/summary.md has them as rows of every table.
# Finished students and samples are reused, so the script resumes where it stopped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
CONFIGS=("$@")
[ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(configs/tiny.toml configs/bench.toml)
ARGS=()
for c in "${CONFIGS[@]}"; do ARGS+=(--config "$c"); done
RANKS="${MCM_RANKS:-2}"
MPI=(mpiexec -n "$RANKS")  # scripts/env.sh allows root and sets the transports
run_stage() { echo "[ablation] $*"; "${MPI[@]}" build/mcm "$@"; }

build/mcm run "${ARGS[@]}"
declare -A VARIANTS=(
  [distill_raw]="distill.motion=raw"
  [distill_diff]="distill.motion=diff"
  [distill_freq]="distill.motion=freq"
  [distill_nomix]="distill.mixed_prob=0"
  [distill_mix01]="distill.mixed_prob=0.1"
)
for out in distill_raw distill_diff distill_freq distill_nomix distill_mix01; do
  # The eval stage scores every student; the per-distill fidelity check is skipped here.
  run_stage distill "${ARGS[@]}" --set "distill.out=$out" --set "${VARIANTS[$out]}" --set distill.eval_prompts=0
done
ABL='sample.ablations=["distill_raw","distill_diff","distill_freq","distill_nomix","distill_mix01"]'
run_stage sample "${ARGS[@]}" --set "$ABL"
run_stage eval "${ARGS[@]}" --set "$ABL"
run_stage report "${ARGS[@]}" --set "$ABL"
echo "[ablation] done: report/index.html and report/summary.md in the run folder list the ablations as rows"
