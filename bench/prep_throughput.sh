#!/usr/bin/env bash
# Runs bench/prep_throughput on the real video2dataset shard (3 H.264 640x360 clips).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
build/bench/prep_throughput --tar tests/data/real/video2dataset-sample.tar --python .venv/bin/python "$@"
