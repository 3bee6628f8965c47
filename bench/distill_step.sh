#!/usr/bin/env bash
# MCM's distillation step, ours vs PyTorch (bench/distill_step.py). MCM_SKIP_SETUP=1 skips setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ "${MCM_SKIP_SETUP:-0}" == 1 ]] || ./scripts/setup.sh
source scripts/env.sh
.venv/bin/python bench/distill_step.py "$@"
