#!/usr/bin/env bash
# Installs everything mcm needs on Debian 12 (apt packages, a venv with the hash-pinned Python
# packages of scripts/requirements.lock: the torch wheel that provides LibTorch and the reference
# libraries behind the test goldens), then configures and builds. Idempotent; quiet when all is present.
#   MCM_SKIP_BUILD=1  only install          MCM_BUILD_TYPE=Debug|Release (default Release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtomlplusplus-dev nlohmann-json3-dev libxxhash-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
  libopenblas0-pthread python3-venv libicu-dev zlib1g-dev
  clang libclang-rt-dev
  chromium   # tests: headless check that mcm report's page renders (tests/stages/test_sample.py)
  slurm-wlm  # tests: slurm/ on a real single-node Slurm with munge (tests/slurm/cluster.py)
)
# torch (pinned at 2.11.0 for the whole project) and the reference libraries, with hashes; edit
# scripts/requirements.in and regenerate the lock as its header says.
LOCK="$ROOT/scripts/requirements.lock"

log() { echo "[setup] $*"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  log "venv: creating $VENV"
  python3 -m venv "$VENV"
fi
# The venv holds the lock it was installed from (its hash in a stamp file): a changed lock reinstalls.
STAMP="$VENV/.mcm-requirements.lock.sha256"
LOCK_SUM="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK_SUM" ]; then
  log "pip: installing scripts/requirements.lock (hash-checked)"
  rm -f "$STAMP"
  "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$LOCK"
  echo "$LOCK_SUM" > "$STAMP"
fi

[ "${MCM_SKIP_BUILD:-0}" = 1 ] && exit 0

TORCH_PREFIX="$("$VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
BUILD_TYPE="${MCM_BUILD_TYPE:-Release}"
if [ ! -f build/build.ninja ] || [ "$(cat build/.mcm_build_type 2>/dev/null)" != "$BUILD_TYPE" ]; then
  log "cmake: configuring build/ ($BUILD_TYPE)"
  mkdir -p build
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DPython3_EXECUTABLE="$VENV/bin/python" >build/.configure.log 2>&1 \
    || { cat build/.configure.log; exit 1; }
  echo "$BUILD_TYPE" > build/.mcm_build_type
fi
log "build: cmake --build build -j2"
if ! cmake --build build -j2 >build/.build.log 2>&1; then
  grep -vE '^\[[0-9]+/[0-9]+\] ' build/.build.log | tail -80
  log "build FAILED (full log: build/.build.log)"
  exit 1
fi
