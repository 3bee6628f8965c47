#!/usr/bin/env bash
# Builds (fuzz/build.sh) and runs one libFuzzer target on its seed corpus; ctest's fuzz.<target>
# calls it with a bound. Exit 0: no finding; 1: a finding (crash, sanitizer report, leak,
# unexpected exception, broken invariant, allocation past -malloc_limit_mb) or a build failure;
# 77: no clang/libFuzzer.
#   fuzz/run.sh [--out DIR] TARGET [libFuzzer flags...]     TARGET: safetensors, tar
#   default DIR build/fuzz; default flags -runs=200000 -max_total_time=60 (later flags win),
#   e.g. fuzz/run.sh tar -max_total_time=3600 -runs=-1 -fork=2 for a long local run.
# New inputs go to DIR/corpus-TARGET (kept between runs); the checked-in seeds in
# fuzz/corpus/TARGET are only read, and fuzz/TARGET.dict is used when it exists.
# A finding is written to DIR/artifacts/ and the command to reproduce it is printed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/build/fuzz"
if [ "${1:-}" = "--out" ]; then OUT="$2"; shift 2; fi
target="${1:-}"
[ -n "$target" ] && [[ "$target" != -* ]] || { echo "usage: fuzz/run.sh [--out DIR] TARGET [libFuzzer flags...]" >&2; exit 1; }
shift

# Flags that belong to the target: input sizes that reach its features, and for tar a malloc
# limit far above any honest allocation for a 16 KiB input (a trusted header size shows up as
# a huge allocation).
declare -A TARGET_FLAGS=(
  [safetensors]="-max_len=4096"
  [tar]="-max_len=16384 -malloc_limit_mb=64"
)
[ -n "${TARGET_FLAGS[$target]:-}" ] || { echo "fuzz: unknown target \"$target\" (known: ${!TARGET_FLAGS[*]})" >&2; exit 1; }
read -ra flags <<< "${TARGET_FLAGS[$target]}"
[ -f "$ROOT/fuzz/$target.dict" ] && flags+=(-dict="$ROOT/fuzz/$target.dict")

bin="$("$ROOT/fuzz/build.sh" "$OUT" "$target" | tail -1)"
rc=${PIPESTATUS[0]}
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "fuzz: build failed" >&2; exit 1; }

mkdir -p "$OUT/corpus-$target" "$OUT/artifacts"
# UBSan must stop at the first report, or libFuzzer never sees it.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
"$bin" "${flags[@]}" -timeout=10 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$OUT/artifacts/$target-" -print_final_stats=1 \
  -runs=200000 -max_total_time=60 "$@" "$OUT/corpus-$target" "$ROOT/fuzz/corpus/$target"
rc=$?
if [ "$rc" != 0 ]; then
  art="$(ls -t "$OUT/artifacts" | grep "^$target-" | head -1)"
  echo "fuzz.$target: FINDING (exit $rc). Reproduce: $bin $OUT/artifacts/$art" >&2
  echo "Fix it, add a regression test (tests/io/), keep the input as" \
       "fuzz/corpus/$target/regress-<what>.input" >&2
  exit 1
fi
