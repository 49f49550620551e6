"""Checkpoint integrity through the real CLI: a damaged newest checkpoint is reported and skipped, retention and
`latest` stay sane, `cyclesr checkpoints list` tells the states, export reads only the SR group, files are
readable by others (umask), and the log stays ordered across a resume."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cyclesr_dist.testing import checkpoint_weights, read_train_log

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def train(demo_data: Path, out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    return cli(
        "train",
        "--config",
        "configs/demo.yaml",
        f"data.root={demo_data}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "data.steps_per_epoch=4",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=2",
        "checkpoint.every_steps=2",
        "checkpoint.keep=2",
        "train.log_every=1",
        "train.val_every_epochs=100",
        "wandb.mode=disabled",
        "data.num_workers=0",
        *extra,
    )


def log_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    result = train(demo_data, out, 6)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def test_files_are_readable_by_others(run: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in [run / "checkpoints" / "latest", *(run / "checkpoints" / "step-00000006").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert cli("export", "--checkpoint", str(run), "--out", str(run / "sr.pt")).returncode == 0
    assert stat.S_IMODE((run / "sr.pt").stat().st_mode) == expected


def test_damaged_newest_checkpoint_is_reported_and_skipped(run: Path, demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(out)], check=True)
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000004", "step-00000006"]
    damaged = ckpts / "step-00000006" / "group-G.pt"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated, as by a full disk

    listing = cli("checkpoints", "list", str(out))
    assert listing.returncode == 1
    assert "step-00000004" in listing.stdout and "DAMAGED: group-G.pt: 1000 bytes" in listing.stdout
    # export needs only the SR group, which is intact
    assert cli("export", "--checkpoint", str(ckpts / "step-00000006"), "--out", str(tmp_path / "sr.pt")).returncode == 0

    result = train(demo_data, out, 8)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "checkpoint step-00000006 is damaged (group-G.pt: 1000 bytes" in result.stdout
    assert f"resumed from {ckpts / 'step-00000004'} at step 4" in result.stdout
    assert (ckpts / ".damaged-step-00000006").is_dir()  # kept for inspection, out of the way
    # retention (keep 2) kept the newest intact ones; `latest` names the newest
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000006", "step-00000008"]
    assert (ckpts / "latest").read_text().strip() == "step-00000008"
    assert log_steps(out) == list(range(1, 9))  # steps 5 and 6 were trained again and logged once
    verified = cli("checkpoints", "list", str(out), "--verify")
    assert verified.returncode == 0 and "verified <- latest" in verified.stdout


def test_explicit_resume_from_a_damaged_checkpoint_is_refused(run: Path, demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(out)], check=True)
    step = out / "checkpoints" / "step-00000006"
    sr = step / "group-SR.pt"
    data = bytearray(sr.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other contents
    sr.write_bytes(bytes(data))
    result = train(demo_data, out, 8, f"checkpoint.resume={step}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1].startswith("cyclesr train: error: checkpoint.resume=")
        and "group-SR.pt: contents changed" in lines[-1]
    )
    assert "Traceback" not in result.stderr
    export = cli("export", "--checkpoint", str(step), "--out", str(tmp_path / "sr.pt"))
    assert export.returncode == 2 and "group-SR.pt: contents changed" in export.stderr
    assert not (tmp_path / "sr.pt").exists()


def test_validation_and_sample_grids_leave_training_as_it_was(run: Path, demo_data: Path, tmp_path: Path) -> None:
    """Validation and sample grids run G, which draws noise from the global generators. A run that validates every
    epoch and draws grids every other step, one that validates only at its end (`run`), and one that ended at step 4
    (a last-step validation) and was then extended to step 6 all train the same weights, bit for bit."""
    often, extended = tmp_path / "often", tmp_path / "extended"
    busy = ["train.val_every_epochs=1", "train.image_every=2"]  # 4-step epochs: validation at 4 and 6
    for out, steps, extra in ((often, 6, busy), (extended, 4, []), (extended, 6, [])):
        result = train(demo_data, out, steps, *extra)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    validated = [r["step"] for r in read_train_log(often) if "val/translation_psnr" in r]
    assert validated == [4, 6]  # it did validate mid-run
    reference = checkpoint_weights(run)
    for out in (often, extended):
        weights = checkpoint_weights(out)
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), out.name
