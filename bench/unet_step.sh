#!/usr/bin/env bash
# UNet step time, peak memory and output agreement, ours vs diffusers on the same torch and weights:
# both teachers' structures (UNet3DConditionModel for ModelScope, UNetMotionModel for AnimateDiff)
# small on the CPU, and at real size with random weights in bf16 on a GPU when one is present.
# Results go to bench/results/. MCM_SKIP_SETUP=1 skips setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ "${MCM_SKIP_SETUP:-0}" == 1 ]] || ./scripts/setup.sh
mkdir -p bench/results
build/bench/unet_step --size tiny --device cpu --threads 2 --reps 10 --rounds 5 --json bench/results/unet_step_tiny_cpu.json "$@"
build/bench/unet_step --size animatediff_tiny --device cpu --threads 2 --frames 4 --res 16 --reps 5 --rounds 3 \
  --json bench/results/unet_step_animatediff_tiny_cpu.json "$@"
if .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  # ModelScope at its training size (256^2 x 16 frames: 32^2 latents), AnimateDiff at 512^2 x 16 (64^2).
  build/bench/unet_step --size modelscope --device cuda --dtype bf16 --frames 16 --res 32 --batch 1 --reps 10 \
    --json bench/results/unet_step_modelscope_cuda.json "$@"
  build/bench/unet_step --size animatediff --device cuda --dtype bf16 --frames 16 --res 64 --batch 1 --reps 5 \
    --rounds 2 --json bench/results/unet_step_animatediff_cuda.json "$@"
fi
