"""slurm/train.sh and `cyclesr submit` against a real (single-node, localhost) Slurm cluster.

The end-to-end runs use the real trainer on the demo config with 2 CPU processes; the requeue mechanics that do not
depend on the trainer (Slurm's own requeue, Submitit on Slurm) use the stand-in trainer (fake_train.py), which
follows the same contract in a fraction of the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from cluster_helpers import (
    FAKE_TRAIN,
    FINAL_STATES,
    REPO,
    fake_config,
    job_diagnostics,
    job_running,
    latest_checkpoint,
    logged_steps,
    python_env,
    read_text,
    wait_for_step,
)

TRAIN_SH = REPO / "slurm" / "train.sh"
# The demo config at a few steps: every step logged, no W&B, the data built by the demo_data fixture.
DEMO_OVERRIDES = ["wandb.mode=disabled", "train.log_every=1", "train.image_every=0"]


def _sbatch_train_sh(slurm, run_dir: Path, config: Path, overrides: list[str], trainer: str | None = None) -> int:
    """`sbatch slurm/train.sh` on the CPU path: 1 node, 2 processes, everything under run_dir."""
    env = python_env({"CPU": "1", "NPROC_PER_NODE": "2", "RUN_DIR": str(run_dir)})
    if trainer:
        env["TRAIN_SCRIPT"] = trainer
    return slurm.sbatch(
        "--gpus-per-node=0",  # the script's default asks for 8 GPUs; this cluster has none
        "--time=30",
        f"--output={run_dir.parent / 'sbatch-%j.out'}",
        str(TRAIN_SH),
        "--config",
        str(config),
        *overrides,
        env=env,
        cwd=REPO,
    )


def _assert_requeued_and_completed(info: dict, run_dir: Path, last_step: int, diag: str) -> None:
    """The job was requeued at least once, finished, and trained every step 1..last_step exactly once, in order."""
    assert info["JobState"] == "COMPLETED", diag
    assert int(info["Restarts"]) >= 1, diag
    steps = logged_steps(run_dir)
    assert steps == list(range(1, last_step + 1)), f"a step was trained twice or skipped: {steps}{diag}"


def test_train_sh_is_valid_bash():
    subprocess.run(["bash", "-n", str(TRAIN_SH)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(TRAIN_SH)], check=True)


def test_train_sh_refuses_to_run_outside_slurm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(TRAIN_SH)], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "sbatch" in proc.stderr


@pytest.mark.slow
def test_sbatch_demo_runs_to_the_end(slurm, real_trainer, demo_data, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*DEMO_OVERRIDES, f"data.root={demo_data}", "max_steps=4", "checkpoint.every_steps=2"]
    job = _sbatch_train_sh(slurm, run_dir, real_trainer, overrides)
    info = slurm.wait_state(job, FINAL_STATES, timeout=300)
    diag = job_diagnostics(slurm, run_dir, job)

    assert info["JobState"] == "COMPLETED", diag
    assert logged_steps(run_dir) == [1, 2, 3, 4], diag
    assert latest_checkpoint(run_dir) == "step-00000004", diag
    ckpt = run_dir / "checkpoints" / "step-00000004"
    assert sorted(p.name for p in ckpt.glob("rank-*")) == ["rank-0.pt", "rank-1.pt"], diag  # 2 processes trained
    out = read_text(run_dir / f"slurm-{job}.out")
    assert "nodes=1 procs/node=2" in out and "step=4" in out, diag


@pytest.mark.slow
def test_usr1_checkpoints_requeues_and_resumes(slurm, real_trainer, demo_data, tmp_path):
    """The time-limit path: USR1 to the batch shell -> the trap forwards it -> the ranks save -> requeue -> resume."""
    run_dir = tmp_path / "run"
    overrides = [*DEMO_OVERRIDES, f"data.root={demo_data}", "max_steps=8", "checkpoint.every_steps=100"]
    job = _sbatch_train_sh(slurm, run_dir, real_trainer, overrides)
    wait_for_step(
        run_dir, 2, timeout=240, alive=job_running(slurm, job), what=lambda: job_diagnostics(slurm, run_dir, job)
    )
    slurm.run("scancel", "--signal=USR1", "--batch", str(job))
    info = slurm.wait_state(job, FINAL_STATES, timeout=300)
    diag = job_diagnostics(slurm, run_dir, job)

    _assert_requeued_and_completed(info, run_dir, last_step=8, diag=diag)
    out = read_text(run_dir / f"slurm-{job}.out")
    assert "USR1" in out and "requeueing" in out, diag
    assert "preempted at step" in out and "resumed from" in out, diag
    assert latest_checkpoint(run_dir) == "step-00000008", diag


@pytest.mark.slow
def test_scontrol_requeue_resumes_from_the_signal_checkpoint(slurm, tmp_path):
    """Requeue from outside (an admin, or preemption with PreemptMode=REQUEUE): SIGTERM to every process, KillWait to
    save; the requeued job resumes. Stand-in trainer: this is Slurm's and the script's part, not the trainer's."""
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=20, checkpoint={"every_steps": 1000}, fake={"step_s": 0.2})
    job = _sbatch_train_sh(slurm, run_dir, config, [], trainer=str(FAKE_TRAIN))
    wait_for_step(
        run_dir, 5, timeout=120, alive=job_running(slurm, job), what=lambda: job_diagnostics(slurm, run_dir, job)
    )
    slurm.run("scontrol", "requeue", str(job))
    info = slurm.wait_state(job, FINAL_STATES, timeout=180)
    diag = job_diagnostics(slurm, run_dir, job)

    _assert_requeued_and_completed(info, run_dir, last_step=20, diag=diag)
    out = read_text(run_dir / f"slurm-{job}.out")
    assert "got SIGTERM" in out and "resumed from" in out, diag


@pytest.mark.slow
def test_submitit_on_slurm_saves_requeues_and_resumes(slurm, tmp_path):
    """`cyclesr submit` on Slurm: USR2 (Submitit's preemption/time-limit signal) reaches every task; they save
    together, rank 0 requeues through Submitit's checkpoint(); the job resumes and finishes."""
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=30, checkpoint={"every_steps": 1000}, fake={"step_s": 0.2})
    cmd = [
        sys.executable,
        "-m",
        "cyclesr_dist.cli",
        "submit",
        "--config",
        str(config),
        "--cpu",
        "--nproc-per-node",
        "2",
        "--timeout-min",
        "10",
        "--run-dir",
        str(run_dir),
        "--entry",
        "fake_train:train",
        "--config-loader",
        "fake_train:load_config",
    ]
    proc = subprocess.run(cmd, env=slurm.env(python_env()), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = int(proc.stdout.split("submitted job ")[1].split(";")[0])
    logs = run_dir / "submitit" / str(job)

    def diag() -> str:
        return (
            f"\n{slurm.job_info(job)}\n{read_text(logs / f'{job}_0_log.out')}\n{read_text(logs / f'{job}_0_log.err')}"
            f"\n{slurm.logs()}"
        )

    wait_for_step(run_dir, 5, timeout=120, alive=job_running(slurm, job), what=diag)
    slurm.run("scancel", "--signal=USR2", str(job))  # every task of the job's steps, as Slurm does at the time limit
    info = slurm.wait_state(job, FINAL_STATES, timeout=180)

    assert info["JobState"] == "COMPLETED", diag()
    assert int(info["Restarts"]) >= 1, diag()
    steps = logged_steps(run_dir)
    assert Counter(steps) == Counter(range(1, 31)), f"a step was trained twice or skipped: {steps}{diag()}"
    out = read_text(logs / f"{job}_0_log.out") + read_text(logs / f"{job}_0_log.err")
    assert "asking the trainer to save" in out and "Requeued job" in out and "resumed from" in out, diag()


@pytest.mark.slow
def test_submitit_task_killed_the_survivor_requeues_and_the_job_resumes(slurm, tmp_path):
    """`cyclesr submit`, 2 tasks: task 1 SIGKILLed after the checkpoint at step 10 (a crash: nothing of it runs
    again). Task 0's collective fails at once; it counts the failure (launch/failures.py) and requeues the job,
    which resumes from step 10 and finishes. Stand-in trainer."""
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=30, checkpoint={"every_steps": 10}, fake={"step_s": 0.3})
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "submit", "--config", str(config), "--cpu", "--nproc-per-node"]
    cmd += ["2", "--timeout-min", "10", "--run-dir", str(run_dir), "--failure-backoff-s", "0"]
    cmd += ["--entry", "fake_train:train", "--config-loader", "fake_train:load_config"]
    proc = subprocess.run(cmd, env=slurm.env(python_env()), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = int(proc.stdout.split("submitted job ")[1].split(";")[0])
    logs = run_dir / "submitit" / str(job)

    def diag() -> str:
        tasks = "".join(read_text(logs / f"{job}_{t}_log.{x}") for t in (0, 1) for x in ("out", "err"))
        return f"\n{slurm.job_info(job)}\n{tasks}\n{slurm.logs()}"

    wait_for_step(run_dir, 12, timeout=120, alive=job_running(slurm, job), what=diag)  # 8 steps before the next save
    task1 = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "submitit.core._submit" in " ".join(p.info["cmdline"] or []) and p.environ().get("SLURM_PROCID") == "1"
    ]
    assert len(task1) == 1, diag()
    task1[0].kill()
    info = slurm.wait_state(job, FINAL_STATES, timeout=180)

    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, diag()
    assert set(logged_steps(run_dir)) == set(range(1, 31)), diag()
    out = read_text(logs / f"{job}_0_log.out") + read_text(logs / f"{job}_0_log.err")
    assert "failure 1 in a row; requeueing in 0s from step-00000010" in out and f"requeued job {job}" in out, diag()
    assert "resumed from step-00000010" in out, diag()  # the run goes on from the checkpoint before the crash
