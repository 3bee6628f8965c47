# slurm/lib.sh: what every mcm batch script shares. Sourced by slurm/*.sbatch, which Slurm runs from a
# copy in its spool folder: the checkout is $MCM_ROOT (set by submit.sh; by hand, sbatch from the
# checkout and it is $SLURM_SUBMIT_DIR), the binary $MCM_BIN (default $MCM_ROOT/build/mcm).
set -euo pipefail
MCM_ROOT="${MCM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
MCM_BIN="${MCM_BIN:-$MCM_ROOT/build/mcm}"
# shellcheck source=slurm/env.sh
source "$MCM_ROOT/slurm/env.sh"
if [ -n "${MCM_ENV_FILE:-}" ]; then
  # shellcheck disable=SC1090
  source "$MCM_ENV_FILE"
fi

# Exit code of a stage that a stop signal made checkpoint and stop (stages::kExitInterrupted).
readonly MCM_EXIT_INTERRUPTED=75

mcm_log() {
  local job="${SLURM_JOB_ID:-?}"
  [ -z "${SLURM_ARRAY_JOB_ID:-}" ] || job="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} ($job)"
  echo "[mcm slurm $(date -u +%FT%TZ) job $job" \
       "attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 ))] $*"
}

# mcm_step STAGE ARGS...: one job step, every task a rank (PMIx wires up Open MPI: --mpi=pmi2 and
# --mpi=none do not work with it). A rank that dies takes the step down at once instead of leaving
# the others blocked in a collective until their timeout.
mcm_step() {
  mcm_begin "$@"
  local rc=0
  srun --mpi=pmix --kill-on-bad-exit=1 "$MCM_BIN" "$@" || rc=$?
  mcm_end "$1" "$rc"
  return "$rc"
}

# mcm_begin STAGE ARGS...: the binary must exist; log what runs where.
mcm_begin() {
  [ -x "$MCM_BIN" ] || { mcm_log "no mcm binary at $MCM_BIN (build it, or set MCM_BIN)"; exit 2; }
  mcm_log "$(hostname): srun mcm $* on ${SLURM_NTASKS:-1} task(s), ${SLURM_JOB_NUM_NODES:-1} node(s)"
}

# mcm_end STAGE RC: log how the step ended.
mcm_end() {
  if [ "$2" -eq 0 ]; then mcm_log "$1 complete"
  else mcm_log "$1 FAILED (exit $2): see the errors above and \`mcm manifest show RUN\`"; fi
}

# Note [requeue]
# mcm_train STAGE ARGS...: a training stage (teacher, distill) that survives its time limit and
# preemption. The job is submitted with --requeue and --signal=B:USR1@LEAD, so LEAD seconds (Slurm
# may add up to 60) before the limit the batch shell, and only it, gets USR1. The step runs in the
# background so that the trap runs at once: it forwards USR1 to srun, which signals every rank;
# the ranks agree at the next step boundary, write a checkpoint and exit 75. The shell then requeues
# the job (same id, SLURM_RESTART_COUNT + 1, the batch script from the top), and the next attempt
# resumes from that checkpoint as the same manifest record (Note [attempts] in
# src/stages/stage_run.cpp). Preemption or `scontrol requeue` send SIGTERM to the ranks themselves:
# they checkpoint the same way (within KillWait) and Slurm requeues. Dependent jobs wait: a
# requeued job is not finished. Exit 0 only when the stage is complete; a refused requeue (the job
# was cancelled) exits 75, a failure so that afterok dependents are cancelled. Periodic checkpoints
# (train.checkpoint_every) remain the guarantee when a node dies without a signal.
mcm_train() {
  mcm_begin "$@"
  srun --mpi=pmix --kill-on-bad-exit=1 "$MCM_BIN" "$@" &
  local pid=$! rc=0
  trap 'mcm_log "USR1: the time limit is near; every rank checkpoints at its next step"; kill -USR1 "$pid" 2>/dev/null || true' USR1
  trap 'mcm_log "TERM: preempted, requeued or cancelled; the ranks checkpoint at their next step"' TERM
  while :; do
    set +e
    wait "$pid"
    rc=$?
    set -e
    kill -0 "$pid" 2>/dev/null || break  # wait was cut short by a trapped signal: srun still runs
  done
  trap - USR1 TERM
  if [ "$rc" -eq "$MCM_EXIT_INTERRUPTED" ]; then
    mcm_log "$1 checkpointed and stopped; requeueing job $SLURM_JOB_ID to resume it"
    # Refused when Slurm is requeueing the job already (preemption, `scontrol requeue`: fine) or
    # cancelling it (then the stage resumes from its checkpoint on the next submit.sh).
    scontrol requeue "$SLURM_JOB_ID" || mcm_log "requeue not accepted: the job is being requeued or cancelled by Slurm already"
    exit "$MCM_EXIT_INTERRUPTED"
  fi
  mcm_end "$1" "$rc"
  exit "$rc"
}
