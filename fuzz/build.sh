#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ straight from the few sources they need (the main
# build is GCC, which has no libFuzzer; one clang command keeps the sanitizer flags off it).
#   fuzz/build.sh [OUT_DIR]     default build/fuzz; prints the path of each binary
# Exit 77 when clang++ or libFuzzer is missing (ctest then reports the test as skipped).
# MCM_FUZZ_CXX picks the compiler (default clang++).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/build/fuzz}" && cd "${1:-$ROOT/build/fuzz}" && pwd)"
CXX="${MCM_FUZZ_CXX:-clang++}"
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found (apt: clang libclang-rt-dev); skipping" >&2
  exit 77
fi
# A toolchain probe, so that a missing libFuzzer runtime skips while a broken target fails.
probe="$OUT/.probe"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe.cpp"
if ! "$CXX" "${FLAGS[@]}" "$probe.cpp" -o "$probe" 2>"$probe.log"; then
  echo "fuzz: $CXX cannot link -fsanitize=fuzzer (apt: libclang-rt-dev); skipping" >&2
  cat "$probe.log" >&2
  exit 77
fi

# name: target source, then the library sources it links (headers only feed the staleness check).
build() {
  local bin="$OUT/$1"; shift
  local srcs=("$@")
  local deps=("${srcs[@]}" src/core/error.hpp src/core/fs.hpp src/core/log.hpp src/io/safetensors.hpp fuzz/build.sh)
  if [ -x "$bin" ] && [ -z "$(cd "$ROOT" && find "${deps[@]}" -newer "$bin")" ]; then
    echo "$bin"; return
  fi
  (cd "$ROOT" && "$CXX" "${FLAGS[@]}" -Isrc "${srcs[@]}" -o "$bin.tmp")
  mv "$bin.tmp" "$bin"
  echo "$bin"
}

build safetensors_fuzz fuzz/safetensors_fuzz.cpp src/io/safetensors.cpp src/core/fs.cpp src/core/log.cpp
