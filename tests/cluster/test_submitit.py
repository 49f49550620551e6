"""`cyclesr submit` (cyclesr_dist.launch.submit): executor parameters, the preemption relay, and Submitit's local
executor running a time-out -> checkpoint -> requeue -> resume cycle (the Slurm side is in test_slurm.py)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_helpers import REPO, fake_config, latest_checkpoint, logged_steps, python_env, read_text

from cyclesr_dist.cli.submit import add_arguments
from cyclesr_dist.launch import submit


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--config", "c.yaml", *argv])


def test_run_overrides_put_the_users_last():
    assert submit.run_overrides(["max_steps=5"], "/r") == ["output_dir=/r", "checkpoint.resume=auto", "max_steps=5"]
    assert submit.run_overrides(["output_dir=/x", "checkpoint.resume=never"], "/r") == [
        "output_dir=/x",
        "checkpoint.resume=never",
    ]


def test_slurm_executor_gets_one_task_per_gpu_and_requeue(monkeypatch, tmp_path):
    monkeypatch.setattr(submit.shutil, "which", lambda name: f"/usr/bin/{name}")
    args = _args("--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--timeout-min", "90.5")
    args.slurm_arg = ["reservation=x"]
    executor = submit.build_executor(args, tmp_path / "%j")
    params = executor._executor.parameters  # SlurmExecutor's sbatch parameters
    assert params["nodes"] == 2 and params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4
    assert params["partition"] == "gpu" and params["time"] == 91 and params["signal_delay_s"] == 180
    assert params["additional_parameters"] == {"requeue": True, "reservation": "x"}

    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder=tmp_path, **params)
    for line in ("--requeue", "--signal=USR2@180", "--ntasks-per-node=4", "--gpus-per-node=4", "--nodes=2"):
        assert f"#SBATCH {line}" in text, text


def test_cpu_and_local_parameters(tmp_path):
    args = _args("--local", "--cpu", "--nproc-per-node", "2", "--timeout-min", "0.5", "--signal-delay-s", "10")
    executor = submit.build_executor(args, tmp_path / "%j")
    assert executor.parameters["tasks_per_node"] == 2
    assert executor.parameters["timeout_min"] == 0.5 and executor.parameters["signal_delay_s"] == 10
    with pytest.raises(ValueError):
        submit.build_executor(_args("--local", "--nodes", "2"), tmp_path / "%j")
    with pytest.raises(ValueError):
        submit.build_executor(_args("--gpus-per-node", "0"), tmp_path / "%j")


def test_checkpoint_resubmits_a_fresh_copy_of_the_task():
    task = submit.TrainTask("c.yaml", ["checkpoint.resume=auto"], cpu=True, save_grace_s=5, entry="m:f", loader="m:g")
    delayed = task.checkpoint()
    fresh = delayed.function
    assert fresh is not task and isinstance(fresh, submit.TrainTask)
    assert vars(fresh) == vars(task)


class _Calls:
    def __init__(self) -> None:
        self.signals: list[int] = []

    def __call__(self, signum, frame) -> None:
        self.signals.append(signum)


@pytest.fixture
def saved_handlers():
    sigs = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGTERM)  # hand_over() ignores SIGTERM
    saved = {s: signal.getsignal(s) for s in sigs}
    yield
    signal.alarm(0)
    for s, handler in saved.items():
        signal.signal(s, handler)


def _deliver(sig: int) -> None:
    signal.raise_signal(sig)
    time.sleep(0.05)  # Python runs the handler between bytecodes


def test_relay_asks_the_trainer_first_and_requeues_after_its_save(saved_handlers):
    submitit_handler, trainer_handler = _Calls(), _Calls()
    signal.signal(signal.SIGUSR2, submitit_handler)
    relay = submit._PreemptionRelay(save_grace_s=0)
    relay.install()
    signal.signal(signal.SIGUSR1, trainer_handler)  # the trainer installs its handler later

    _deliver(signal.SIGUSR2)
    assert relay.fired and trainer_handler.signals == [signal.SIGUSR1] and submitit_handler.signals == []
    relay.hand_over()  # what TrainTask does once the trainer returned 75
    relay.hand_over()
    assert submitit_handler.signals == [signal.SIGUSR2]


def test_relay_requeues_at_once_before_the_trainer_is_ready(saved_handlers):
    submitit_handler = _Calls()
    signal.signal(signal.SIGUSR2, submitit_handler)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    relay = submit._PreemptionRelay(save_grace_s=30)
    relay.install()
    _deliver(signal.SIGUSR2)
    assert submitit_handler.signals == [signal.SIGUSR2]


def test_relay_requeues_when_the_trainer_does_not_stop_in_time(saved_handlers):
    submitit_handler, trainer_handler = _Calls(), _Calls()
    signal.signal(signal.SIGUSR2, submitit_handler)
    relay = submit._PreemptionRelay(save_grace_s=1)
    relay.install()
    signal.signal(signal.SIGUSR1, trainer_handler)
    _deliver(signal.SIGUSR2)
    assert trainer_handler.signals and not submitit_handler.signals
    time.sleep(1.5)
    assert submitit_handler.signals == [signal.SIGUSR2]


def _submit_local(tmp_path: Path, config: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "submit", "--config", str(config), "--local", "--cpu"]
    cmd += ["--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"), *extra]
    return subprocess.run(cmd, env=python_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _task_logs(run_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{read_text(p, 6000)}" for p in sorted((run_dir / "submitit").glob("*/*_log.*")))


@pytest.mark.slow
def test_local_timeout_requeues_and_resumes(tmp_path):
    """Submitit's local executor with a 30 s limit and USR2 15 s before it: the ranks save on the signal, rank 0
    requeues through checkpoint(), the restarted tasks resume from that checkpoint and finish. (60 steps of 0.25 s
    cannot fit in the first 15 s; under heavy CPU load a run may take more than two rounds, which is fine.)"""
    config = fake_config(tmp_path / "fake.yaml", max_steps=60, checkpoint={"every_steps": 1000}, fake={"step_s": 0.25})
    proc = _submit_local(
        tmp_path,
        config,
        "--timeout-min",
        "0.5",
        "--signal-delay-s",
        "15",
        "--entry",
        "fake_train:train",
        "--config-loader",
        "fake_train:load_config",
        timeout=240,
    )
    run_dir = tmp_path / "run"
    logs = _task_logs(run_dir)
    diag = f"\n{proc.stdout}\n{proc.stderr}\n{logs}"
    assert proc.returncode == 0, diag
    assert "Requeued job" in logs and "asking the trainer to save" in logs and "resumed from" in logs, diag
    steps = logged_steps(run_dir)
    assert Counter(steps) == Counter(range(1, 61)), f"a step was trained twice or skipped: {steps}{diag}"
    assert latest_checkpoint(run_dir) == "step-00000060", diag


@pytest.mark.slow
def test_local_run_of_the_real_trainer(tmp_path, real_trainer, demo_data):
    """Two local tasks call the real trainer in-process (TorchDistributedEnvironment -> Accelerate on gloo)."""
    proc = _submit_local(
        tmp_path,
        real_trainer,
        "--timeout-min",
        "10",
        "max_steps=2",
        "wandb.mode=disabled",
        "train.log_every=1",
        "train.image_every=0",
        f"data.root={demo_data}",
        timeout=400,
    )
    run_dir = tmp_path / "run"
    diag = f"\n{proc.stdout}\n{proc.stderr}\n{_task_logs(run_dir)}"
    assert proc.returncode == 0, diag
    assert logged_steps(run_dir) == [1, 2], diag
    assert latest_checkpoint(run_dir) == "step-00000002", diag
    ckpt = run_dir / "checkpoints" / "step-00000002"
    assert sorted(p.name for p in ckpt.glob("rank-*")) == ["rank-0.pt", "rank-1.pt"], diag
    assert json.loads((ckpt / "meta.json").read_text())["world_size"] == 2, diag
