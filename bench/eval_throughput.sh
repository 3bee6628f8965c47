#!/usr/bin/env bash
# Evaluation throughput (embedded FVD detector, teacher DDIM + CFG sampler), ours vs PyTorch on the
# same torch and threads, on a finished run (default runs/tiny: made by `mcm run` when missing), CPU
# and, when a GPU is present, CUDA. Results go to bench/results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
./scripts/setup.sh
RUN="${1:-runs/tiny}"
[ -f "$RUN/eval/detector.safetensors" ] || build/mcm run --config configs/tiny.toml --set run.dir="$RUN"
mkdir -p bench/results
build/bench/eval_throughput --run "$RUN" --device cpu --threads 2 --json bench/results/eval_throughput_cpu.json
if .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  build/bench/eval_throughput --run "$RUN" --device cuda --threads 2 --clips 4096 --batch 256 --sample-clips 64 \
    --sample-batch 32 --json bench/results/eval_throughput_cuda.json
fi
