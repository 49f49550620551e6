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
