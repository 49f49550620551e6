#!/bin/bash
# CycleSR training on Slurm: N nodes x G GPUs, one srun task per node running `accelerate launch`.
#
#   sbatch slurm/train.sh --config configs/demo.yaml [key=value ...]
#   sbatch --nodes=4 --gpus-per-node=4 --partition=gpu slurm/train.sh --config FILE max_steps=100000
#   CPU=1 NPROC_PER_NODE=2 sbatch --gpus-per-node=0 slurm/train.sh --config FILE       # CPU-only cluster
#
# The #SBATCH lines are defaults: options on the sbatch command line (or SBATCH_* variables) override them.
# Environment variables read here (sbatch passes the submitting shell's environment through):
#   CONFIG          config file when no --config is given            [configs/demo.yaml]
#   RUN_DIR         run directory: checkpoints, train log, this job's output
#                                                     [$SLURM_SUBMIT_DIR/runs/<job name>-<job id>]
#   RESUME          value of checkpoint.resume                         [auto]
#   CPU=1           train on CPUs (gloo) with NPROC_PER_NODE processes per node
#   NPROC_PER_NODE  processes per node                      [GPUs per node of the allocation; 1 with CPU=1]
#   MAIN_PORT       rendezvous port                        [derived from the job id and restart count]
#   TRAIN_SCRIPT    training entry point                               [train.py]
#   PYTHON          interpreter that has the project installed         [python]
#   VENV            virtualenv to activate first                       [none]
#   ACCELERATE_CONFIG  accelerate config file passed as --config_file  [none]
#   MAX_RESTARTS    stop requeueing after this many restarts           [50]
#   MAX_FAILURES    stop requeueing after this many failures in a row without a new checkpoint   [3]
#   FAILURE_BACKOFF_S  seconds before the requeue after the first failure, doubled per failure in a row  [30]
#
# Preemption and time limits: Slurm sends USR1 to this script (B:) 300 s before the time limit; the trap
# forwards it to the training processes, which agree on a step, save a checkpoint and exit; then the job
# requeues itself and the next run resumes from the newest complete checkpoint (checkpoint.resume=auto).
# A job that Slurm preempts or requeues itself gets SIGTERM and KillWait seconds to do the same.
# Failures: a rank that crashes (killed, out of memory, a GPU error) ends the step (srun --kill-on-bad-exit), and a
# rank whose peer died or stalled stops after dist.timeout_s with exit 76; either way the job requeues itself
# after a back-off and resumes from the newest intact checkpoint, unless MAX_FAILURES failures came in a row
# without a new checkpoint in between (a broken config or node fails fast every time: that stops for a person).
#
#SBATCH --job-name=cyclesr
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -uo pipefail

log() { echo "[train.sh $(date +%H:%M:%S) job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0}] $*"; }

if [[ -z ${SLURM_JOB_ID:-} ]]; then
    echo "slurm/train.sh is a batch script: submit it with sbatch (see the header)" >&2
    exit 2
fi

PROJECT_DIR=${PROJECT_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$PROJECT_DIR" || exit 1

CONFIG=${CONFIG:-configs/demo.yaml}
case ${1:-} in
    --config) CONFIG=$2; shift 2 ;;
    --config=*) CONFIG=${1#--config=}; shift ;;
esac
RUN_DIR=${RUN_DIR:-$PROJECT_DIR/runs/${SLURM_JOB_NAME:-cyclesr}-$SLURM_JOB_ID}
mkdir -p "$RUN_DIR" || exit 1
echo "[train.sh] job $SLURM_JOB_ID: output goes to $RUN_DIR/slurm-$SLURM_JOB_ID.out"
exec >>"$RUN_DIR/slurm-$SLURM_JOB_ID.out" 2>&1

if [[ -n ${VENV:-} ]]; then
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
fi
PYTHON=${PYTHON:-python}
export PYTHONUNBUFFERED=1

NNODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
if [[ ${CPU:-0} == 1 ]]; then
    NPROC_PER_NODE=${NPROC_PER_NODE:-1}
else
    gpus=${SLURM_GPUS_PER_NODE:-${GPUS_PER_NODE:-8}}
    NPROC_PER_NODE=${NPROC_PER_NODE:-${gpus##*:}}  # "a100:8" -> 8
fi
NUM_PROCESSES=$((NNODES * NPROC_PER_NODE))
if ((NUM_PROCESSES < 1)); then
    log "no processes to start (NPROC_PER_NODE=$NPROC_PER_NODE); on a CPU-only cluster set CPU=1"
    exit 2
fi

# Rank 0 lives on the first node of the allocation; use the address Slurm itself uses to reach it.
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MAIN_ADDR=$(scontrol show node "$MAIN_HOST" --oneliner 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
MAIN_ADDR=${MAIN_ADDR:-$MAIN_HOST}
# Same job id => same port on every node; a restart moves it so a port in TIME_WAIT is not reused.
MAIN_PORT=${MAIN_PORT:-$((20000 + (SLURM_JOB_ID + 7919 * ${SLURM_RESTART_COUNT:-0}) % 40000))}

LAUNCH_ARGS=(--num_processes "$NUM_PROCESSES" --num_machines "$NNODES"
    --main_process_ip "$MAIN_ADDR" --main_process_port "$MAIN_PORT")
if [[ -n ${ACCELERATE_CONFIG:-} ]]; then
    # The config file decides the backend: --multi_gpu or the CPU flags would override a DeepSpeed config
    # (distributed_type: DEEPSPEED); the DeepSpeed backend sets up gloo itself on a CPU-only node.
    LAUNCH_ARGS+=(--config_file "$ACCELERATE_CONFIG")
elif [[ ${CPU:-0} == 1 ]]; then
    # `accelerate launch --cpu` starts a single process; the torchrun launcher (--multi_gpu) starts
    # NPROC_PER_NODE of them, and ACCELERATE_USE_CPU makes Accelerate pick CPU + gloo.
    export ACCELERATE_USE_CPU=true
    if ((NUM_PROCESSES > 1)); then LAUNCH_ARGS+=(--multi_gpu); else LAUNCH_ARGS+=(--cpu); fi
elif ((NUM_PROCESSES > 1)); then
    LAUNCH_ARGS+=(--multi_gpu)
fi
TRAIN_ARGS=("${TRAIN_SCRIPT:-train.py}" --config "$CONFIG"
    "output_dir=$RUN_DIR" "checkpoint.resume=${RESUME:-auto}" "$@")

log "nodes=$NNODES procs/node=$NPROC_PER_NODE main=$MAIN_ADDR:$MAIN_PORT run_dir=$RUN_DIR"
log "train: ${TRAIN_ARGS[*]}"

REQUEUE=0
SRUN_PID=
on_usr1() {
    log "USR1: time limit or preemption ahead; asking the trainer to checkpoint, then requeueing"
    REQUEUE=1
    if [[ -n $SRUN_PID ]]; then
        # Signals every process of the job's steps (not this script); the per-node launchers ignore USR1.
        scancel --signal=USR1 "$SLURM_JOB_ID" || kill -USR1 "$SRUN_PID"
    fi
}
trap on_usr1 USR1
# On scancel/preemption Slurm signals every process; keep waiting so the trainer can finish its save.
TERMINATED=0
trap 'TERMINATED=1; log "TERM: waiting for the trainer to save and exit"' TERM

# One task per node, with all of the node's CPUs (since Slurm 22.05 a step does not inherit --cpus-per-task; where
# the site binds tasks to CPUs, the launcher and all its workers would otherwise share one core). The launcher
# (accelerate launch -> torchrun agent) ignores USR1 so that it keeps running while its workers save; the workers
# install their own handler. $SLURM_NODEID expands on each node, in the inner shell.
# shellcheck disable=SC2016
srun --nodes="$NNODES" --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_ON_NODE:-1}" --kill-on-bad-exit=1 \
    bash -c 'trap "" USR1; exec "$0" -m accelerate.commands.launch --machine_rank "$SLURM_NODEID" "$@"' \
    "$PYTHON" "${LAUNCH_ARGS[@]}" "${TRAIN_ARGS[@]}" &
SRUN_PID=$!
if ((REQUEUE)); then on_usr1; fi

while :; do
    wait "$SRUN_PID"
    rc=$?
    # wait returns >128 when a trapped signal interrupts it; keep waiting while srun runs.
    if ((rc > 128)) && kill -0 "$SRUN_PID" 2>/dev/null; then continue; fi
    break
done
log "training step exited with $rc"

if ((rc == 0)); then exit 0; fi
if ((${SLURM_RESTART_COUNT:-0} >= ${MAX_RESTARTS:-50})); then
    log "not requeueing: already restarted ${SLURM_RESTART_COUNT} times (MAX_RESTARTS)"
    exit "$rc"
fi
if ((TERMINATED && !REQUEUE)); then
    log "not requeueing: stopped by SIGTERM (scancel, or Slurm's own preemption, which requeues by itself)"
    exit "$rc"
fi
if ((!REQUEUE)); then
    # A failure, not a preemption: requeue after a back-off unless too many came in a row without a new checkpoint
    # (the rule and its counter, RUN_DIR/failures, are cyclesr_dist/launch/failures.py's, shared with Submitit).
    log "training failed (exit $rc)"
    if ! backoff=$("$PYTHON" -m cyclesr_dist.launch.failures "$RUN_DIR" --attempt "$SLURM_JOB_ID.${SLURM_RESTART_COUNT:-0}" \
        --max-failures "${MAX_FAILURES:-3}" --backoff-s "${FAILURE_BACKOFF_S:-30}"); then
        log "not requeueing (MAX_FAILURES=${MAX_FAILURES:-3})"
        exit "$rc"
    fi
    sleep "$backoff"
fi
log "requeueing; the next run resumes from $RUN_DIR/checkpoints/latest"
scontrol requeue "$SLURM_JOB_ID"
exit 0
