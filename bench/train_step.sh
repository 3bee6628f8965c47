#!/usr/bin/env bash
# The training engine's benchmark (bench/train_step.py): ours vs PyTorch step, weak scaling 1 -> 2
# ranks with the hidden share of the all-reduce, HDF5 loader vs memory. MCM_SKIP_SETUP=1 skips setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ "${MCM_SKIP_SETUP:-0}" == 1 ]] || ./scripts/setup.sh
source scripts/env.sh
.venv/bin/python bench/train_step.py "$@"
