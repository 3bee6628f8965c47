#!/usr/bin/env bash
# UNet3D step time, ours vs diffusers on the same torch: the tiny configuration on the CPU, and
# the ModelScope-size one on a GPU when one is present. Results go to bench/results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
mkdir -p bench/results
build/bench/unet_step --size tiny --device cpu --threads 2 --reps 10 --rounds 5 --json bench/results/unet_step_tiny_cpu.json "$@"
if .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  build/bench/unet_step --size modelscope --device cuda --dtype bf16 --frames 16 --res 32 --batch 1 --reps 10 \
    --json bench/results/unet_step_modelscope_cuda.json "$@"
fi
