"""`cyclesr submit`: the arguments; the launcher itself is `launch/submit.py` (imported only when it runs)."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_ENTRY = "cyclesr_dist.cli.train:train"
DEFAULT_LOADER = "cyclesr_dist.config:load_config"


def register(sub: Any) -> None:
    p = sub.add_parser("submit", help="launch training with Submitit (Slurm, or --local)")
    add_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..launch.submit import run as submit

    return submit(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides passed to the trainer")
    parser.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node = tasks per node (default: 8)")
    parser.add_argument("--cpu", action="store_true", help="train on CPUs (gloo), --nproc-per-node tasks per node")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="tasks per node with --cpu (default: 1)")
    parser.add_argument("--partition", help="Slurm partition")
    parser.add_argument("--account", help="Slurm account")
    parser.add_argument("--qos", help="Slurm QOS")
    parser.add_argument("--constraint", help="Slurm node constraint, e.g. a100")
    parser.add_argument("--timeout-min", type=float, default=24 * 60, help="time limit per run (default: 1440)")
    parser.add_argument("--cpus-per-task", type=int, default=0, help="CPUs per task (default: the cluster's)")
    parser.add_argument("--mem-gb", type=float, default=0, help="memory per node in GB (default: the cluster's)")
    parser.add_argument(
        "--signal-delay-s",
        type=int,
        default=180,
        help="seconds before the time limit at which the job saves and requeues itself (default: 180)",
    )
    parser.add_argument(
        "--save-grace-s",
        type=float,
        default=None,
        help="how long to wait for that save before requeueing anyway (default: 2/3 of --signal-delay-s)",
    )
    parser.add_argument("--max-requeues", type=int, default=20, help="requeues after time-outs (default: 20)")
    parser.add_argument(
        "--max-failures", type=int, default=3, help="requeues after failures in a row with no new checkpoint (3)"
    )
    parser.add_argument(
        "--failure-backoff-s", type=float, default=30.0, help="wait before requeueing a failure, doubled per one (30)"
    )
    parser.add_argument("--name", default="cyclesr", help="job name (default: cyclesr)")
    parser.add_argument(
        "--run-dir", help="output directory of the run: checkpoints, logs, Submitit files (default: runs/NAME-TIME)"
    )
    parser.add_argument("--setup", action="append", help="shell line run before the tasks (repeatable)")
    parser.add_argument(
        "--slurm-arg", action="append", metavar="KEY=VALUE", help="extra #SBATCH option, e.g. reservation=x"
    )
    parser.add_argument("--local", action="store_true", help="run here with Submitit's local executor (waits)")
    parser.add_argument("--wait", action="store_true", help="wait for the job to finish")
    # The trainer's entry points, as "module:function"; tests swap in a stand-in trainer.
    parser.add_argument("--entry", default=DEFAULT_ENTRY, help=argparse.SUPPRESS)
    parser.add_argument("--config-loader", default=DEFAULT_LOADER, help=argparse.SUPPRESS)
