"""Real multi-process training on CPU (gloo) under `accelerate launch`: DDP, preemption, exact resume,
2→1 resume, SIGKILL during a save, a rank that stalls or dies (torchrun restarts the run in place), and the offline
W&B run. No mocks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from cyclesr_dist.checkpoint_format import latest_checkpoint, load_file, read_checkpoint, verify
from cyclesr_dist.errors import PEER_FAILED
from cyclesr_dist.errors import PREEMPTED as PREEMPTED_EXIT_CODE
from cyclesr_dist.testing import checkpoint_weights as final_weights

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

_port = [29700 + os.getpid() % 500]


def launch(
    n_procs: int, *overrides: str, env: dict | None = None, zero_stage: int = 0, launcher: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`accelerate launch` with n CPU processes (torchrun under the hood), or plain `python train.py` for 1;
    with `zero_stage`, through the project's DeepSpeed accelerate config instead of DDP; `launcher`: more
    `accelerate launch` arguments."""
    if zero_stage:
        _port[0] += 1
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            f"configs/accelerate/deepspeed_zero{zero_stage}.yaml",
            "--num_processes",
            str(n_procs),
            "--main_process_port",
            str(_port[0]),
            "train.py",
        ]
    elif n_procs > 1:
        _port[0] += 1
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(n_procs),
            "--num_machines",
            "1",
            "--main_process_port",
            str(_port[0]),
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            *launcher,
            "train.py",
        ]
    else:
        cmd = [sys.executable, "train.py"]
    return subprocess.Popen(
        cmd + ["--config", "configs/demo.yaml", *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


# torchrun's in-place restart: the c10d rendezvous, with a fresh store per restart. The default static rendezvous
# and c10d's shared store both keep the last processes' keys, and the restarted ranks then read their peers' old
# gloo addresses and fail to connect ("connectFullMesh ... Connection refused").
IN_PLACE_RESTART = ("--max_restarts", "1", "--rdzv_backend", "c10d")
FRESH_STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def base_overrides(data: Path, out: Path, steps: int) -> list[str]:
    return [
        f"data.root={data}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "data.steps_per_epoch=4",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=3",
        "train.log_every=1",
        "train.val_every_epochs=100",
        "train.image_every=0",
        "train.deterministic=true",
        "checkpoint.every_steps=1000",
        "wandb.mode=disabled",
        "data.num_workers=0",
    ]


def logged(out: Path) -> dict[int, dict]:
    """step -> every value logged at that step (training and validation rows merged)."""
    records: dict[int, dict] = {}
    for row in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()):
        records.setdefault(row["step"], {}).update(row)
    return records


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    log = out / "train_log.jsonl"
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        if log.exists() and any(json.loads(line)["step"] >= step for line in log.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached")


def wandb_history_values(run_dir: Path, key: str) -> list[float]:
    """Values of `key` in the run's .wandb file: protobuf HistoryItem {key = field 2, value_json = field 16}."""
    raw = next(run_dir.glob("run-*.wandb")).read_bytes()
    tag = b"\x12" + bytes([len(key)]) + key.encode() + b"\x82\x01"
    values = []
    for match in re.finditer(re.escape(tag), raw):
        length = raw[match.end()]
        values.append(json.loads(raw[match.end() + 1 : match.end() + 1 + length]))
    return values


def worker_pids(launcher: subprocess.Popen) -> list[int]:
    children = psutil.Process(launcher.pid).children(recursive=True)
    return [
        c.pid
        for c in children
        if any("train.py" in part for part in c.cmdline()) and "accelerate" not in " ".join(c.cmdline())
    ]


@pytest.fixture(scope="module")
def straight_run(demo_data, tmp_path_factory):
    """2 processes, 16 steps (translation, SR pre-train and joint stages), uninterrupted."""
    out = tmp_path_factory.mktemp("straight")
    code, log = finish(launch(2, *base_overrides(demo_data, out, 16)))
    assert code == 0, log[-4000:]
    return out


def test_ddp_two_processes(straight_run):
    ckpt = read_checkpoint(straight_run / "checkpoints" / "step-00000016")
    assert ckpt.meta["world_size"] == 2
    assert (ckpt.path / "rank-0.pt").is_file() and (ckpt.path / "rank-1.pt").is_file()
    records = logged(straight_run)
    assert [records[s]["stage"] for s in (1, 5, 9, 16)] == ["translation", "sr_pretrain", "joint", "joint"]
    assert records[5]["lr/G"] == 0.0 and records[5]["lr/SR"] > 0


def test_preempted_run_resumes_bitwise_identical(straight_run, demo_data, tmp_path):
    out = tmp_path / "resumed"
    proc = launch(2, *base_overrides(demo_data, out, 16))
    wait_for_step(out, 6, proc)
    # Signal one rank only: the ranks agree at the next step boundary and save together.
    os.kill(worker_pids(proc)[-1], signal.SIGTERM)
    code, log = finish(proc)
    assert f"exiting with {PREEMPTED_EXIT_CODE}" in log, log[-4000:]
    stopped_at = latest_checkpoint(out / "checkpoints").step
    assert 6 <= stopped_at < 16

    code, log = finish(launch(2, *base_overrides(demo_data, out, 16)))  # resume=auto is the default
    assert code == 0, log[-4000:]
    assert f"resumed from {out / 'checkpoints' / f'step-{stopped_at:08d}'} at step {stopped_at}" in log
    straight, resumed = final_weights(straight_run), final_weights(out)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    a, b = logged(straight_run), logged(out)
    for step in range(stopped_at + 1, 17):
        assert a[step]["loss/SR" if "loss/SR" in a[step] else "loss/G"] == b[step].get(
            "loss/SR" if "loss/SR" in a[step] else "loss/G"
        ), step


@pytest.mark.parametrize("event", [signal.SIGSTOP, signal.SIGKILL], ids=["stalled", "killed"])
def test_a_rank_that_stalls_or_dies_restarts_in_place_and_ends_bitwise(straight_run, demo_data, tmp_path, event):
    """One rank stopped (SIGSTOP: the other's watchdog sees no step for dist.stall_timeout_s, writes its stacks,
    names the frozen rank and exits 76) or killed mid-run; torchrun (IN_PLACE_RESTART) ends the other and restarts
    both, which resume from the newest intact checkpoint (step 8) and end with the
    uninterrupted run's weights bit for bit."""
    out, stall_s = tmp_path / "failed", 10
    # the collective timeout also bounds start-up (each rank must reach the rendezvous within it): not too short
    overrides = [*base_overrides(demo_data, out, 16), "checkpoint.every_steps=8", "dist.timeout_s=60"]
    proc = launch(2, *overrides, f"dist.stall_timeout_s={stall_s}", launcher=IN_PLACE_RESTART, env=FRESH_STORE)
    wait_for_step(out, 9, proc)  # the checkpoint at step 8 is complete before step 9 runs
    frozen = worker_pids(proc)[-1]
    os.kill(frozen, event)
    started = time.monotonic()
    code, log = finish(proc)
    assert code == 0, log[-4000:]
    if event == signal.SIGSTOP:  # the waiting rank's watchdog: how long, where its stacks are, who is behind
        line = next((x for x in log.splitlines() if x.startswith("[watchdog] rank 0/2: no step completed")), "")
        assert f"(dist.stall_timeout_s={stall_s})" in line and f"pid {frozen}" in line, log[-4000:]
        assert "rank 1 is behind: no heartbeat for" in line and line.endswith(f"exiting with {PEER_FAILED}"), line
        stacks = (out / "heartbeat" / "stacks-rank-0.txt").read_text()
        assert "backward" in stacks and "train_step" in stacks, stacks  # rank 0 waited in the gradient all-reduce
    # the stalled rank's launcher waits 30 s for it to obey SIGTERM before it kills it, then both start again
    assert time.monotonic() - started < stall_s + 30 + 120, log[-4000:]
    assert f"resumed from {out / 'checkpoints' / 'step-00000008'} at step 8" in log, log[-4000:]
    # the resumed run drops the log rows of the steps it trains again: each step once, in order
    assert [row["step"] for row in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())] == list(
        range(1, 17)
    )
    straight, resumed = final_weights(straight_run), final_weights(out)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_checkpoint_from_two_processes_resumes_on_one(straight_run, demo_data, tmp_path):
    out = tmp_path / "two_to_one"
    code, log = finish(launch(2, *base_overrides(demo_data, out, 8)))
    assert code == 0, log[-3000:]
    code, log = finish(launch(1, *base_overrides(demo_data, out, 12)))
    assert code == 0, log[-3000:]
    assert "at step 8 (written by 2 processes)" in log
    assert read_checkpoint(out / "checkpoints" / "step-00000012").meta["world_size"] == 1


def test_single_process_preemption_exit_code(demo_data, tmp_path):
    out = tmp_path / "single"
    proc = launch(1, *base_overrides(demo_data, out, 500))
    wait_for_step(out, 2, proc)
    proc.send_signal(signal.SIGUSR1)
    code, log = finish(proc)
    assert code == PREEMPTED_EXIT_CODE, log[-3000:]
    assert latest_checkpoint(out / "checkpoints").step >= 2


def test_sigkill_during_save_never_breaks_resume(demo_data, tmp_path):
    """SIGKILL while a save is in flight (a `.partial-step-*` folder exists), three times: the checkpoint resume
    picks is intact (every file matches meta.json's size and checksum, every .pt loads with weights_only), and the
    run resumes from it. The `latest` pointer may legitimately be one behind or missing (a kill between the
    rename of the step folder and the rewrite of the pointer); resume does not depend on it."""
    out = tmp_path / "killed"
    # Reference-width networks make each save take long enough to be killed in the middle of it.
    big = [
        "model.generator.args={ngf: 64, n_blocks: 9}",
        "model.discriminator.args={ndf: 64, n_layers: 2}",
        "model.sr.args={nf: 64, nb: 20}",
        "data.hr_patch=64",
        "data.batch_size=1",
        "checkpoint.every_steps=1",
        "checkpoint.keep=2",
    ]
    checkpoints = out / "checkpoints"
    kills = 0
    while kills < 3:
        proc = launch(1, *base_overrides(demo_data, out, 200), *big)
        deadline = time.time() + 300
        in_flight = False
        while time.time() < deadline and proc.poll() is None:
            # A save that is not the first, so an older complete checkpoint exists to fall back on.
            if list(checkpoints.glob(".partial-step-*")) and latest_checkpoint(checkpoints) is not None:
                in_flight = True
                break
            time.sleep(0.002)
        assert in_flight, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        latest = latest_checkpoint(checkpoints)
        assert latest is not None and verify(latest) == []
        for f in latest.path.glob("*.pt"):
            load_file(f)  # every file of the checkpoint resume picks loads with weights_only=True
    code, log = finish(launch(1, *base_overrides(demo_data, out, latest.step + 1), *big))
    assert code == 0, log[-3000:]
    assert f"resumed from {latest.path} at step {latest.step}" in log
    assert not list(checkpoints.glob(".partial-*")) and not list(checkpoints.glob(".damaged-*"))


def test_offline_wandb_run_has_images_psnr_and_no_secret(demo_data, tmp_path):
    out = tmp_path / "wandb"
    secret = "not-a-real-key-0123456789abcdef0123456789abcdef"
    overrides = [o for o in base_overrides(demo_data, out, 6) if not o.startswith(("wandb.", "train."))]
    overrides += [
        "wandb.mode=offline",
        "train.image_every=3",
        "train.log_every=2",
        "train.val_every_epochs=1",
        "stages.sr_pretrain_epoch=1",
        "stages.joint_epoch=1",
    ]
    env = {"WANDB_API_KEY": secret, "WANDB_SILENT": "true"}
    code, log = finish(launch(1, *overrides, env=env))
    assert code == 0, log[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = runs[0].name.rsplit("-", 1)[1]
    images = list(runs[0].glob("files/media/images/samples/*.png"))
    assert {p.name.split("_")[0] for p in images} == {"translation", "comparison"} and len(images) == 4  # steps 3, 6
    # The run file's history (and summary) records carry the validation PSNR values of the training log.
    psnr_logged = {r["val/psnr_rgb"] for r in logged(out).values() if "val/psnr_rgb" in r}
    assert len(psnr_logged) == 2 and set(wandb_history_values(runs[0], "val/psnr_rgb")) == psnr_logged
    # Resuming continues the same W&B run.
    code, log = finish(launch(1, *[o.replace("max_steps=6", "max_steps=8") for o in overrides], env=env))
    assert code == 0, log[-3000:]
    assert {p.name.rsplit("-", 1)[1] for p in (out / "wandb").glob("offline-run-*")} == {run_id}
    # The key comes from the environment only: it is in no file the job wrote, nor in its output.
    assert secret not in log
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_deepspeed_zero2_trainer_preempt_and_resume(demo_data, tmp_path):
    """The same 16 steps through four ZeRO-2 engines: preempted and resumed, it ends where an uninterrupted
    DeepSpeed run ends. (Step-level equality with data-parallel maths is tests/test_deepspeed.py's job.)"""
    straight = tmp_path / "ds_straight"
    code, log = finish(launch(2, *base_overrides(demo_data, straight, 16), zero_stage=2))
    assert code == 0, log[-4000:]
    assert (straight / "checkpoints" / "step-00000016" / "deepspeed" / "SR").is_dir()

    out = tmp_path / "ds_resumed"
    proc = launch(2, *base_overrides(demo_data, out, 16), zero_stage=2)
    wait_for_step(out, 6, proc)
    os.kill(worker_pids(proc)[0], signal.SIGUSR1)
    code, log = finish(proc)
    assert f"exiting with {PREEMPTED_EXIT_CODE}" in log, log[-4000:]
    stopped_at = latest_checkpoint(out / "checkpoints").step
    assert 6 <= stopped_at < 16
    code, log = finish(launch(2, *base_overrides(demo_data, out, 16), zero_stage=2))
    assert code == 0, log[-4000:]
    assert f"at step {stopped_at}" in log
    ds_straight, ds_resumed = final_weights(straight), final_weights(out)
    for key in ds_straight:
        torch.testing.assert_close(ds_resumed[key], ds_straight[key], rtol=0, atol=1e-6, msg=key)
