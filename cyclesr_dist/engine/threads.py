"""How many CPU threads each training process uses: what the job was granted, shared by the processes of a node.

torch otherwise starts one OpenMP thread per core it *sees* in every process; under Slurm, in a container with a
CPU quota, or with several processes per node that oversubscribes the cores, and busy-waiting OpenMP threads then
make every step several times slower (measured: two default trainers on 2 cores, 3.6× each; BENCHMARKS.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch


def _cgroup_cpus() -> float | None:
    """The cgroup v2 (or v1) CPU quota in CPUs, None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def granted_cpus() -> tuple[int, str]:
    """(CPUs this node's processes may use, where that number comes from): the smallest of the affinity mask,
    the cgroup quota and Slurm's per-task CPUs (slurm/train.sh runs one task per node for all its processes)."""
    limits = {"affinity mask": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    quota = _cgroup_cpus()
    if quota is not None:
        limits["cgroup quota"] = max(1, math.floor(quota))
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        limits["SLURM_CPUS_PER_TASK"] = int(os.environ["SLURM_CPUS_PER_TASK"])
    source = min(limits, key=lambda k: limits[k] or 1)
    return max(1, int(limits[source] or 1)), source


def configure_threads(local_processes: int) -> str:
    """Set torch's intra-op threads to the granted CPUs / local processes (at least 1), unless OMP_NUM_THREADS says
    otherwise; returns a line saying what was chosen and why."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return f"threads: {torch.get_num_threads()} per process (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
    cpus, source = granted_cpus()
    threads = max(1, cpus // max(1, local_processes))
    torch.set_num_threads(threads)
    return f"threads: {threads} per process ({cpus} CPUs by the {source}, {local_processes} process(es) on this node)"
