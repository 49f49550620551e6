"""The README's demo path, end to end through the real CLI: demo data, training, logs, checkpoint, validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cyclesr_dist.checkpoint_format import complete_checkpoints, find_checkpoint, network_state, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def test_demo_data_is_unpaired_real_photos(demo_data):
    manifest = json.loads((demo_data / "manifest.json").read_text())
    assert set(manifest["hr"]).isdisjoint(manifest["real_lr"]) and set(manifest["val"]).isdisjoint(manifest["hr"])
    assert len(list((demo_data / "hr").glob("*.png"))) == len(manifest["hr"]) >= 5
    assert len(list((demo_data / "val" / "lr").glob("*.png"))) == len(manifest["val"])


def short_demo_run(demo_data: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """configs/demo.yaml for 60 steps, stages compressed: 10 translation steps, then joint training from step 11."""
    return run_cli(
        "train",
        "--config",
        "configs/demo.yaml",
        f"data.root={demo_data}",
        f"output_dir={out}",
        "max_steps=60",
        "data.steps_per_epoch=10",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=2",
        "train.log_every=5",
        "train.val_every_epochs=6",
        "checkpoint.every_steps=30",
        "wandb.mode=disabled",
        "data.num_workers=0",
        *overrides,
    )


def test_short_demo_run_sr_loss_falls_and_validates(demo_data, tmp_path):
    out = tmp_path / "run"
    # Without its bicubic skip the SR net starts far from its loss floor, so 50 SR updates show learning; with the
    # skip it starts at bicubic, near the floor (the next test covers the shipped config).
    result = short_demo_run(demo_data, out, "model.sr.args.bicubic_skip=false")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    sr = [r["loss/SR"] for r in records if "loss/SR" in r]
    assert len(sr) >= 8
    assert np.mean(sr[-3:]) < 0.75 * np.mean(sr[:3]), sr
    assert [r["stage"] for r in records if "stage" in r][:2] == ["translation", "translation"]
    val = [r for r in records if "val/psnr_rgb" in r]
    assert val and val[-1]["step"] == 60 and val[-1]["val/bicubic_psnr_rgb"] > 15
    assert "step=60" in result.stdout
    assert [read_checkpoint(p).step for p in complete_checkpoints(out / "checkpoints")] == [30, 60]
    entry, state = network_state(find_checkpoint(out), "sr")
    assert entry["name"] == "vdsr_lr" and entry["args"]["nb"] == 6 and "head.weight" in state


def test_shipped_demo_config_stays_near_bicubic(demo_data, tmp_path):
    """The demo's networks as shipped: 60 steps of joint training do not collapse the SR net. The reference
    networks did: val PSNR 15.3 dB at step 60 of this run, 12 dB at step 300, against bicubic's 31.7."""
    out = tmp_path / "run"
    result = short_demo_run(demo_data, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/psnr_rgb" in r][-1]
    assert val["step"] == 60 and val["val/psnr_rgb"] > val["val/bicubic_psnr_rgb"] - 1.0, val


@pytest.mark.slow
def test_readme_demo_ends_with_the_sr_net_above_bicubic(demo_data, tmp_path):
    """The README's demo exactly as shipped (300 steps, ~1.5 min on 2 cores): the SR net it trains without pairs
    ends above bicubic on the held-out validation photos (BENCHMARKS.md, "The demo", has the figures per recipe
    and seed; the recipe before the JPEG stage ended below)."""
    out = tmp_path / "run"
    result = run_cli("train", "--config", "configs/demo.yaml", f"data.root={demo_data}", f"output_dir={out}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/psnr_rgb" in r][-1]
    assert val["step"] == 300 and val["val/psnr_rgb"] > val["val/bicubic_psnr_rgb"], val
    assert (out / "comparison.png").is_file()


def test_progress_bar_on_a_terminal_and_plain_lines_elsewhere(demo_data, tmp_path):
    """On a terminal (a pseudo-terminal from `script`) the run draws a progress bar with step/total and the stage;
    in a pipe (a log file) it writes plain lines only."""
    import shlex
    import shutil

    train = [
        "train", "--config", "configs/demo.yaml", f"data.root={demo_data}", "max_steps=6", "train.log_every=3",
        "wandb.mode=disabled", "data.num_workers=0", "train.val_every_epochs=100",
    ]  # fmt: skip
    if shutil.which("script") is None:
        pytest.skip("`script` (util-linux) is needed to give the run a terminal")
    command = shlex.join([sys.executable, "-m", "cyclesr_dist.cli", *train, f"output_dir={tmp_path / 'tty'}"])
    tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert tty.returncode == 0, tty.stdout[-3000:]
    assert "6/6 [" in tty.stdout and "translation" in tty.stdout and "step=6 " in tty.stdout
    piped = run_cli(*train, f"output_dir={tmp_path / 'pipe'}")
    assert piped.returncode == 0 and "step=6 " in piped.stdout and "6/6 [" not in piped.stdout + piped.stderr


def test_production_config_trains_its_recipe_through_every_stage(demo_data, tmp_path):
    """configs/cyclesr.yaml as shipped (reference widths, the recipe's options, bf16, batched calls) on small crops
    of the demo photos: translation, then joint steps, a checkpoint holding G's JPEG range measured on the real LR."""
    out = tmp_path / "run"
    result = run_cli(
        "train", "--config", "configs/cyclesr.yaml", "data.kind=folder", f"data.root={demo_data}",
        f"output_dir={out}", "data.hr_patch=128", "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false",
        "data.steps_per_epoch=2", "max_steps=4", "stages.sr_pretrain_epoch=2", "stages.joint_epoch=2",
        "train.log_every=1", "train.val_every_epochs=100", "checkpoint.every_steps=4", "wandb.mode=disabled",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if "stage" in r] == ["translation"] * 2 + ["joint"] * 2
    assert all(np.isfinite(r["loss/SR"]) for r in records if "loss/SR" in r)
    # `jpeg_quality: auto` became the range the JPEG tool measures on the same photos; stored with G, not learned
    tool = run_cli("data", "jpeg-quality", str(demo_data / "real_lr"))
    measured = json.loads(tool.stdout.strip().rsplit("jpeg_quality=", 1)[1])
    assert "jpeg_quality auto: G's JPEG quality drawn from" in result.stdout
    entry, state = network_state(find_checkpoint(out), "gen_clean_to_real")
    assert entry["args"]["jpeg_quality"] == measured and entry["args"]["ngf"] == 64
    # `input_blur: auto` too, against the clean LR the config gives G: the demo's real LR is not blurrier than its
    # HR photos' sampled LR, so G's blur is off
    assert "on the sampled LR of" in result.stdout and entry["args"]["input_blur"] == 0
    assert "jpeg.quality_fraction" not in state
