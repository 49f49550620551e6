"""Helpers shared by the launcher tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cyclesr_dist.testing import read_train_log

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAKE_TRAIN = HERE / "fake_train.py"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ with the repo and this folder importable (the project need not be pip-installed)."""
    env = dict(os.environ)
    paths = [str(REPO), str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WANDB_MODE", "disabled")
    env.update(extra or {})
    return env


def fake_config(path: Path, **values) -> Path:
    """A config file for the stand-in trainer."""
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


def logged_steps(run_dir: Path) -> list[int]:
    return [int(row["step"]) for row in read_train_log(run_dir) if "step" in row]


def latest_checkpoint(run_dir: Path) -> str | None:
    pointer = run_dir / "checkpoints" / "latest"
    return pointer.read_text().strip() if pointer.exists() else None


def wait_for_step(run_dir: Path, step: int, timeout: float, alive=lambda: True, what=lambda: "") -> None:
    """Wait until the trainer logged ``step``; ``alive()`` false ends the wait early, ``what()`` explains a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(logged_steps(run_dir), default=0) >= step:
            return
        if not alive():
            break
        time.sleep(0.2)
    raise AssertionError(f"step {step} not logged in {run_dir}; steps so far: {logged_steps(run_dir)}\n{what()}")


def read_text(path: Path, tail: int = 12000) -> str:
    return path.read_text(errors="replace")[-tail:] if path.exists() else f"<{path} missing>"


def job_running(slurm, job_id: int):
    """A callable: is the job still queued or running (for wait_for_step's ``alive``)?"""
    return lambda: slurm.job_info(job_id).get("JobState") not in FINAL_STATES


def job_diagnostics(slurm, run_dir: Path, job_id: int) -> str:
    """The job's state, the run's output (slurm/train.sh's log), sbatch's output and the daemons' logs."""
    return (
        f"\n--- job {job_id}: {slurm.job_info(job_id)}\n--- run output:\n"
        f"{read_text(run_dir / f'slurm-{job_id}.out')}\n--- sbatch output:\n"
        f"{read_text(run_dir.parent / f'sbatch-{job_id}.out')}\n--- daemons:\n{slurm.logs()}"
    )


def worker_on(node: str, run_dir: Path):
    """The training process (train.py, not its launchers) of the run in `run_dir` that Slurm started on `node`, or
    None. By its run folder too: another run on the test cluster (a test, a soak beside it) has ranks there."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "train.py" in cmd and f"output_dir={run_dir}" in cmd and "accelerate" not in cmd and "bash" not in cmd:
            try:
                if proc.environ().get("SLURMD_NODENAME") == node:
                    return proc
            except psutil.Error:
                continue
    return None
