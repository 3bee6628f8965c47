#!/usr/bin/env bash
# The GPU rows of bench/train_step and bench/distill_step at ModelScope size (bench/gpu_steps.py):
# `mcm teacher` and `mcm distill` vs the same steps in PyTorch, bf16 autocast, one GPU.
# MCM_SKIP_SETUP=1 skips setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ "${MCM_SKIP_SETUP:-0}" == 1 ]] || ./scripts/setup.sh
source scripts/env.sh
.venv/bin/python bench/gpu_steps.py "$@"
