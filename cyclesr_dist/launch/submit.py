"""`cyclesr submit`: run training as a Submitit job on Slurm, or on this machine with ``--local``.

    cyclesr submit --config configs/cyclesr.yaml --nodes 2 --gpus-per-node 8 --partition gpu --timeout-min 1440
    cyclesr submit --config configs/demo.yaml --local --cpu --nproc-per-node 2 max_steps=20 wandb.mode=disabled

The arguments are defined in `cli/submit.py`. One task per GPU (per process with ``--cpu``). Each task exports
the torch.distributed variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
``set_cuda_visible_devices=False`` so Accelerate sees every GPU of the node) and calls the trainer in-process:
``load_config(config, overrides)`` then ``train(config)``.

Everything of a run lives in one run directory (``--run-dir``): the trainer's ``output_dir`` (checkpoints, logs) and
Submitit's files (``submitit/``). Every run is started with ``checkpoint.resume=auto``, so a requeued job carries on
from the newest complete checkpoint.

Time limits and preemption: Submitit's sbatch asks Slurm for USR2 ``signal_delay_s`` before the time limit. Every
rank relays it to the trainer as its own stop request (its USR1 handler): the ranks agree at the next step, save a
checkpoint together and the trainer returns 75. Then rank 0 runs Submitit's handler, which calls
:meth:`TrainTask.checkpoint` (a fresh copy of the same task) and requeues the job. A signal handler on rank 0 alone
could not save: the save is a collective. If the trainer has not installed its handler yet, or has not stopped
within ``save_grace_s``, the job is requeued at once and resumes from the last periodic checkpoint.

Failures: a rank that crashes takes its task down; the surviving tasks' trainers stop within ``dist.timeout_s``
(exit 76) and requeue the job themselves, with `launch/failures.py`'s back-off and limit (``--max-failures`` in a
row without a new checkpoint), as slurm/train.sh does.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from ..errors import PREEMPTED
from .failures import record_failure


def _load(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (imported lazily, inside the job)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _log(message: str) -> None:
    print(f"[cyclesr submit] {message}", flush=True)


def run_overrides(overrides: Sequence[str], run_dir: str | os.PathLike[str]) -> list[str]:
    """The launcher's own overrides first (output dir, resume), then the user's, which win where they overlap."""
    keys = {item.partition("=")[0] for item in overrides}
    own = []
    if "output_dir" not in keys:
        own.append(f"output_dir={run_dir}")
    if "checkpoint.resume" not in keys:
        own.append("checkpoint.resume=auto")
    return [*own, *overrides]


class _PreemptionRelay:
    """Relays Submitit's preemption signal to the trainer, and hands over to Submitit once the trainer stopped."""

    def __init__(self, save_grace_s: float) -> None:
        self.save_grace_s = save_grace_s
        self.signum = submitit.JobEnvironment._usr_sig()
        self.submitit_handler: Any = None
        self.fired = False
        self.handed_over = False

    def install(self) -> None:
        self.submitit_handler = signal.getsignal(self.signum)
        signal.signal(self.signum, self._on_signal)

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if self.fired:
            return
        self.fired = True
        trainer_handler = signal.getsignal(signal.SIGUSR1)
        if not callable(trainer_handler):
            _log(f"got {signal.Signals(signum).name} before the trainer could save: requeueing now")
            self.hand_over(frame)
            return
        _log(f"got {signal.Signals(signum).name}: asking the trainer to save a checkpoint and stop")
        trainer_handler(signal.SIGUSR1, frame)
        if self.save_grace_s > 0:
            signal.signal(signal.SIGALRM, self._on_deadline)
            signal.alarm(max(1, int(self.save_grace_s)))

    def _on_deadline(self, signum: int, frame: types.FrameType | None) -> None:
        _log(f"the trainer did not stop within {self.save_grace_s:.0f}s: requeueing without a final checkpoint")
        self.hand_over(frame)

    def hand_over(self, frame: types.FrameType | None = None) -> None:
        """Submitit's own handler: on global rank 0 it calls ``checkpoint()``, requeues and exits; elsewhere a no-op."""
        signal.alarm(0)
        if self.handed_over:
            return
        self.handed_over = True
        if callable(self.submitit_handler):
            if os.environ.get("RANK", "0") == "0":  # exported by TorchDistributedEnvironment
                # `scontrol requeue` makes Slurm SIGTERM every process of the job, the scontrol that Submitit runs
                # included; ignored here, the ignore is inherited by scontrol, which then lives to report success.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.submitit_handler(self.signum, frame)


def _exit_status(entry: Callable[[Any], Any], config: Any) -> int:
    try:
        result = entry(config)
    except SystemExit as exc:
        result = exc.code
    if result is None:
        return 0
    return result if isinstance(result, int) else 1


class TrainTask(submitit.helpers.Checkpointable):
    """The callable each Submitit task runs: set up torch.distributed's environment, call the trainer."""

    def __init__(
        self,
        config: str,
        overrides: Sequence[str] = (),
        *,
        cpu: bool = False,
        save_grace_s: float = 60.0,
        entry: str,
        loader: str,
        max_failures: int = 3,
        failure_backoff_s: float = 30.0,
    ) -> None:
        self.config = str(config)
        self.overrides = list(overrides)
        self.cpu = cpu
        self.save_grace_s = save_grace_s
        self.entry = entry
        self.loader = loader
        self.max_failures = max_failures
        self.failure_backoff_s = failure_backoff_s

    def __call__(self) -> int:
        job = submitit.JobEnvironment()
        dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if self.cpu:
            os.environ["ACCELERATE_USE_CPU"] = "true"  # Accelerate: CPU + gloo even where GPUs exist
        _log(
            f"job {job.job_id} rank {dist.rank}/{dist.world_size} (local {dist.local_rank}) on {job.hostname}, "
            f"main process {dist.master_addr}:{dist.master_port}"
        )
        relay = _PreemptionRelay(self.save_grace_s)
        relay.install()
        config = _load(self.loader)(self.config, list(self.overrides))
        try:
            status = _exit_status(_load(self.entry), config)
        except Exception:
            self._after_failure(job.job_id, dist.rank)  # a peer died or stalled, or this rank failed
            raise
        if status not in (0, PREEMPTED):
            self._after_failure(job.job_id, dist.rank)
        if relay.fired and status == PREEMPTED:
            _log("checkpoint saved; requeueing")
            relay.hand_over()  # rank 0 exits here (requeued); the other ranks just return
            return status
        signal.alarm(0)
        if status == PREEMPTED:
            # SIGTERM from the scheduler (scancel, preemption): the checkpoint is saved; Slurm decides about a requeue.
            raise SystemExit(status)
        if status != 0:
            raise RuntimeError(f"the trainer exited with status {status}")
        return status

    def _after_failure(self, job_id: str, rank: int) -> None:
        """Requeue the job after a failure, as slurm/train.sh does (`launch.failures`: a back-off, and a stop after
        too many failures in a row without a new checkpoint). Any rank that survived may be the one to do it: the
        one that crashed cannot. Submitit itself requeues after preemption and time-outs only."""
        run_dir = Path([o for o in self.overrides if o.startswith("output_dir=")][-1].partition("=")[2])
        attempt = f"{job_id}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
        decision = record_failure(run_dir, attempt, self.max_failures, self.failure_backoff_s)
        _log(f"rank {rank}: the run failed; {decision.message}")
        if not decision.requeue or shutil.which("scontrol") is None:
            return
        time.sleep(decision.backoff_s)
        # `scontrol requeue` makes Slurm SIGTERM every process of the job, this one included: ignored (and inherited
        # by scontrol, which then lives to report), as in the preemption hand-over.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        requeued = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        _log(f"requeued job {job_id}" if requeued.returncode == 0 else f"requeue: {requeued.stderr.strip()}")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same task: the state is on disk (the trainer's checkpoints), not in this object."""
        fresh = type(self)(
            self.config,
            self.overrides,
            cpu=self.cpu,
            save_grace_s=self.save_grace_s,
            entry=self.entry,
            loader=self.loader,
            max_failures=self.max_failures,
            failure_backoff_s=self.failure_backoff_s,
        )
        return submitit.helpers.DelayedSubmission(fresh)


def build_executor(args: argparse.Namespace, folder: str | os.PathLike[str]) -> submitit.Executor:
    """An AutoExecutor for Slurm (Submitit's LocalExecutor with ``--local``) from the parsed command line."""
    tasks_per_node = args.nproc_per_node if args.cpu else args.gpus_per_node
    if tasks_per_node < 1:
        raise ValueError("no task to start: pass --gpus-per-node N, or --cpu with --nproc-per-node N")
    common: dict[str, Any] = {"name": args.name, "nodes": args.nodes, "tasks_per_node": tasks_per_node}
    if args.cpus_per_task:
        common["cpus_per_task"] = args.cpus_per_task
    if args.mem_gb:
        common["mem_gb"] = float(args.mem_gb)
    if not args.cpu:
        common["gpus_per_node"] = args.gpus_per_node
    if args.local:
        if args.nodes != 1:
            raise ValueError("--local runs on this machine: --nodes must be 1")
        # LocalExecutor itself: AutoExecutor forwards neither signal_delay_s nor fractional minutes to it.
        local = submitit.LocalExecutor(folder, max_num_timeout=args.max_requeues)
        local.update_parameters(
            nodes=1,
            tasks_per_node=tasks_per_node,
            gpus_per_node=0 if args.cpu else args.gpus_per_node,
            timeout_min=float(args.timeout_min),
            signal_delay_s=args.signal_delay_s,
        )
        return local
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found: submit from a Slurm login node, or use --local")
    slurm: dict[str, Any] = {"slurm_signal_delay_s": args.signal_delay_s}
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(args, key):
            slurm[f"slurm_{key}"] = getattr(args, key)
    if args.setup:
        slurm["slurm_setup"] = list(args.setup)
    extra: dict[str, Any] = {"requeue": True}  # `scontrol requeue` needs it where JobRequeue=0
    for item in args.slurm_arg or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slurm-arg {item!r} is not KEY=VALUE")
        extra[key.replace("-", "_")] = value
    slurm["slurm_additional_parameters"] = extra
    executor = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=args.max_requeues)
    executor.update_parameters(**common, timeout_min=max(1, math.ceil(args.timeout_min)), **slurm)
    return executor


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or f"runs/{args.name}-{time.strftime('%Y%m%d-%H%M%S')}").absolute()
    config = Path(args.config).absolute()
    if not config.is_file():
        print(f"cyclesr submit: no config file {config}", file=sys.stderr)
        return 2
    grace = args.save_grace_s if args.save_grace_s is not None else args.signal_delay_s * 2 / 3
    try:
        executor = build_executor(args, run_dir / "submitit" / "%j")
    except (ValueError, RuntimeError) as exc:
        print(f"cyclesr submit: {exc}", file=sys.stderr)
        return 2
    task = TrainTask(
        str(config),
        run_overrides(args.overrides, run_dir),
        cpu=args.cpu,
        save_grace_s=grace,
        entry=args.entry,
        loader=args.config_loader,
        max_failures=args.max_failures,
        failure_backoff_s=args.failure_backoff_s,
    )
    job = executor.submit(task)
    _log(f"submitted job {job.job_id}; run directory {run_dir}")
    _log(f"task 0 log: {job.paths.stdout}")
    if not (args.wait or args.local):
        return 0
    try:
        job.results()  # one result per task
    except Exception as exc:  # submitit raises a FailedJobError carrying the task's traceback
        print(f"cyclesr submit: job {job.job_id} failed: {exc}", file=sys.stderr)
        return 1
    _log(f"job {job.job_id} finished")
    return 0
