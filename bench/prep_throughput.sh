#!/usr/bin/env bash
# prep throughput, fairly: decode rows on WebVid-like clips (ours with seeking, ours from frame 0,
# the libavcodec decode-only limit, PyAV), then the whole prep (`mcm prep` against a PyTorch loader,
# both with an SD-size VAE and a CLIP text encoder made from random weights). On the CPU the VAE
# runs at 64x64 in float32; with a GPU at 256x256 in bfloat16. Table on stdout, JSON in
# bench/results/prep_throughput.json. About 4 minutes on 2 cores (the first run also makes the
# clips and model folders, kept in $MCM_BENCH_DIR). MCM_SKIP_SETUP=1 skips scripts/setup.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ "${MCM_SKIP_SETUP:-0}" = 1 ] || ./scripts/setup.sh
PY="$ROOT/.venv/bin/python"
WORK="${MCM_BENCH_DIR:-/tmp/mcm-prep-bench}"
"$PY" bench/make_bench_clips.py --out "$WORK/clips" --n 12 --tar-n 8
"$PY" bench/prep_models.py "$WORK/models"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda DTYPE=bf16 PREP_SIZE=256
else
  DEVICE=cpu DTYPE=fp32 PREP_SIZE=64
fi
mkdir -p bench/results
build/bench/prep_throughput --clips "$WORK/clips" --python "$PY" --scripts bench \
  --frames 16 --stride 8 --window 128 --size 256 --reps 3 \
  --mcm build/mcm --models "$WORK/models" --prep-size "$PREP_SIZE" --device "$DEVICE" --dtype "$DTYPE" \
  --threads "${MCM_BENCH_THREADS:-$(nproc)}" --json bench/results/prep_throughput.json "$@"
