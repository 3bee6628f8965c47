#!/usr/bin/env bash
# Builds libFuzzer targets with clang++ straight from the few sources they need (the main
# build is GCC, which has no libFuzzer; one clang command keeps the sanitizer flags off it).
#   fuzz/build.sh [OUT_DIR [TARGET...]]   default build/fuzz and every target in SOURCES;
#                                         prints the path of each binary, OUT_DIR/<target>_fuzz
# Exit 77 when clang++ or libFuzzer is missing (ctest then reports the test as skipped).
# MCM_FUZZ_CXX picks the compiler (default clang++).
# A target <t> is fuzz/<t>_fuzz.cpp plus one line in SOURCES; fuzz/run.sh runs it on
# fuzz/corpus/<t>/ and fuzz/CMakeLists.txt registers its ctest fuzz.<t>.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/build/fuzz}" && cd "${1:-$ROOT/build/fuzz}" && pwd)"
shift $(( $# > 0 ? 1 : 0 ))
CXX="${MCM_FUZZ_CXX:-clang++}"
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)

# target -> the library sources it links besides fuzz/<target>_fuzz.cpp.
declare -A SOURCES=(
  [safetensors]="src/io/safetensors.cpp src/core/fs.cpp src/core/log.cpp"
  [tar]="src/io/tar.cpp src/io/webdataset.cpp src/core/fs.cpp src/core/log.cpp"
)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(printf '%s\n' "${!SOURCES[@]}" | sort)
for t in "${targets[@]}"; do
  [ -n "${SOURCES[$t]:-}" ] || { echo "fuzz: unknown target \"$t\" (known: ${!SOURCES[*]})" >&2; exit 1; }
done

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found (apt: clang libclang-rt-dev); skipping" >&2
  exit 77
fi
# A toolchain probe, so that a missing libFuzzer runtime skips while a broken target fails.
# Per process: ctest may build two targets at once.
probe="$OUT/.probe-$$"
trap 'rm -f "$probe" "$probe.cpp" "$probe.log"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe.cpp"
if ! "$CXX" "${FLAGS[@]}" "$probe.cpp" -o "$probe" 2>"$probe.log"; then
  echo "fuzz: $CXX cannot link -fsanitize=fuzzer (apt: libclang-rt-dev); skipping" >&2
  cat "$probe.log" >&2
  exit 77
fi

# Rebuilds OUT/<t>_fuzz when it is older than its sources, their headers, src/core's headers or
# this script.
build() {
  local t="$1" bin="$OUT/$1_fuzz"
  local srcs=("fuzz/${t}_fuzz.cpp")
  read -ra libs <<< "${SOURCES[$t]}"
  srcs+=("${libs[@]}")
  local deps=("${srcs[@]}" fuzz/build.sh)
  cd "$ROOT"
  for s in "${libs[@]}"; do [ -f "${s%.cpp}.hpp" ] && deps+=("${s%.cpp}.hpp"); done
  deps+=(src/core/*.hpp)
  if [ -x "$bin" ] && [ -z "$(find "${deps[@]}" -newer "$bin")" ]; then
    echo "$bin"; return
  fi
  "$CXX" "${FLAGS[@]}" -Isrc "${srcs[@]}" -o "$bin.tmp.$$"
  mv "$bin.tmp.$$" "$bin"
  echo "$bin"
}

for t in "${targets[@]}"; do build "$t"; done
