#!/usr/bin/env bash
# Builds (fuzz/build.sh) and runs the safetensors fuzzer on the seed corpus; ctest's
# fuzz.safetensors calls it with a bound. Exit 0: no finding; 1: a finding (crash, sanitizer
# report, leak, unexpected exception, broken invariant) or a build failure; 77: no clang/libFuzzer.
#   fuzz/run.sh [--out DIR] [libFuzzer flags...]
#   default DIR build/fuzz; default flags -runs=200000 -max_total_time=60 (later flags win),
#   e.g. fuzz/run.sh -max_total_time=3600 -jobs=2 -workers=2 for a long local run.
# New inputs go to DIR/corpus-safetensors (kept between runs); the checked-in seeds are only read.
# A finding is written to DIR/artifacts/ and the command to reproduce it is printed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/build/fuzz"
if [ "${1:-}" = "--out" ]; then OUT="$2"; shift 2; fi

bin="$("$ROOT/fuzz/build.sh" "$OUT" | tail -1)"
rc=${PIPESTATUS[0]}
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "fuzz: build failed" >&2; exit 1; }

mkdir -p "$OUT/corpus-safetensors" "$OUT/artifacts"
# UBSan must stop at the first report, or libFuzzer never sees it.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
"$bin" -dict="$ROOT/fuzz/safetensors.dict" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 \
  -runs=200000 -max_total_time=60 "$@" "$OUT/corpus-safetensors" "$ROOT/fuzz/corpus/safetensors"
rc=$?
if [ "$rc" != 0 ]; then
  art="$(ls -t "$OUT/artifacts" | head -1)"
  echo "fuzz.safetensors: FINDING (exit $rc). Reproduce: $bin $OUT/artifacts/$art" >&2
  echo "Fix it, add a test to tests/io/test_safetensors.cpp, keep the input as" \
       "fuzz/corpus/safetensors/regress-<what>.input" >&2
  exit 1
fi
