#!/usr/bin/env bash
# slurm/submit.sh CONFIG [options]: submits every stage of a run (pipeline.stages) to Slurm, chained
# with afterok dependencies, and records the job ids in the run's manifest.
#
#   --config FILE        an overlay on CONFIG (repeatable)
#   --set KEY=VALUE      a config override (repeatable), passed to every stage
#   --partition P  --account A  --nodes N  --gpus-per-node G  --time T
#                        shorthands for --set slurm.partition=P etc. ([slurm] in apps/slurm.cpp)
#   --dry-run            print the sbatch commands, submit nothing
#
# Stages the manifest records complete for this configuration are not submitted again, so the same
# command after a failure submits the failed stage and everything after it, and after success
# submits nothing. A job that fails cancels every job downstream (--kill-on-invalid-dep=yes).
# Job logs: RUN/slurm/<job-name>-<job-id>.out. The plan and the sbatch options come from
# `mcm slurm plan` (apps/slurm.cpp): configuration, validation and the skip rule are mcm's own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MCM_BIN="${MCM_BIN:-$ROOT/build/mcm}"
SBATCH="${SBATCH:-sbatch}"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "submit.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
abs() { [ -e "$1" ] || die "config file $1 not found"; echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
margs=(--config "$(abs "$1")")
shift
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || usage; margs+=(--config "$(abs "$2")"); shift 2 ;;
    --set) [ $# -ge 2 ] || usage; margs+=(--set "$2"); shift 2 ;;
    --partition) [ $# -ge 2 ] || usage; margs+=(--set "slurm.partition=\"$2\""); shift 2 ;;
    --account) [ $# -ge 2 ] || usage; margs+=(--set "slurm.account=\"$2\""); shift 2 ;;
    --nodes) [ $# -ge 2 ] || usage; margs+=(--set "slurm.nodes=$2"); shift 2 ;;
    --gpus-per-node) [ $# -ge 2 ] || usage; margs+=(--set "slurm.gpus_per_node=$2"); shift 2 ;;
    --time) [ $# -ge 2 ] || usage; margs+=(--set "slurm.train_time=\"$2\""); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown option \"$1\" (see --help)" ;;
  esac
done
[ -x "$MCM_BIN" ] || die "no mcm binary at $MCM_BIN (run scripts/setup.sh, or set MCM_BIN)"

plan="$("$MCM_BIN" slurm plan "${margs[@]}")" || die "mcm slurm plan failed (above)"
eval "$plan"

# A run whose last submission still has jobs in the queue is not submitted twice.
if [ -n "$MCM_LAST_JOBS" ] && [ "$dry_run" = 0 ]; then
  live="$(squeue -h -o '%i %j %T' -j "$MCM_LAST_JOBS" 2>/dev/null || true)"
  [ -z "$live" ] || die "run $MCM_RUN_DIR still has jobs of its last submission in the queue:
$live
wait for them, or cancel them (scancel ${MCM_LAST_JOBS//,/ }) and submit again"
fi

# What each stage waits for (only stages submitted now: complete ones need no waiting).
declare -A needs=([prep]="synth" [teacher]="prep" [distill]="teacher" [baseline]="teacher"
                  [sample]="distill baseline" [eval]="sample" [report]="eval")
declare -A job=()
submitted=()
mkdir -p "$MCM_RUN_DIR/slurm"
for name in "${MCM_PLAN[@]}"; do
  state="MCM_STATE_$name"
  if [ "${!state}" = complete ]; then
    record="MCM_RECORD_$name"
    echo "$name: complete (record ${!record}), not submitted"
    continue
  fi
  stage="MCM_STAGE_$name"
  declare -n sb="MCM_SBATCH_$name" args="MCM_ARGS_$name"
  opts=("${sb[@]}" --job-name="mcm-$name" --open-mode=append --parsable --kill-on-invalid-dep=yes
        --export="ALL,MCM_ROOT=$ROOT,MCM_BIN=$MCM_BIN,MCM_ENV_FILE=$MCM_ENV_FILE")
  if [ "$name" = prep ]; then
    opts+=(--output="$MCM_RUN_DIR/slurm/%x-%A_%a.out")
    script_args=("$MCM_PREP_PARTS" "${args[@]}")
  else
    opts+=(--output="$MCM_RUN_DIR/slurm/%x-%j.out")
    script_args=("${args[@]}")
  fi
  deps=()
  for d in ${needs[$name]:-}; do
    [ -n "${job[$d]:-}" ] && deps+=("${job[$d]}")
  done
  if [ ${#deps[@]} -gt 0 ]; then opts+=(--dependency="afterok:$(IFS=:; echo "${deps[*]}")"); fi
  script="$ROOT/slurm/${!stage}.sbatch"
  if [ "$dry_run" = 1 ]; then
    job[$name]="<$name>"
    printf '%s: would run:' "$name"; printf ' %q' "$SBATCH" "${opts[@]}" "$script" "${script_args[@]}"; echo
    unset -n sb args
    continue
  fi
  out="$("$SBATCH" "${opts[@]}" "$script" "${script_args[@]}")" || die "sbatch of $name failed (above); jobs submitted so far: ${submitted[*]:-none}"
  id="${out%%;*}"
  job[$name]="$id"
  submitted+=("$name=$id")
  echo "$name: job $id${deps:+ (after ${deps[*]})}"
  unset -n sb args
done

if [ "$dry_run" = 1 ]; then exit 0; fi
if [ ${#submitted[@]} -eq 0 ]; then
  echo "nothing to submit: every stage of $MCM_RUN_DIR is complete (mcm manifest show $MCM_RUN_DIR)"
  exit 0
fi
"$MCM_BIN" slurm submitted "${margs[@]}" -- "${submitted[@]}" ||
  die "the jobs are submitted (${submitted[*]}) but recording them in $MCM_RUN_DIR/manifest.json failed"
echo "submitted ${#submitted[@]} job(s) for $MCM_RUN_DIR; logs in $MCM_RUN_DIR/slurm/, progress: squeue -u \$USER," \
     "records: $MCM_BIN manifest show $MCM_RUN_DIR"
