"""Bad input through the real CLI: one line that names the problem and the fix, exit status 2, no traceback, and
nothing written. `--debug` shows the traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclesr_dist.data.images import save_rgb
from cyclesr_dist.models import SR_NETS
from cyclesr_dist.serve.export import export_sr

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    export_sr(SR_NETS.build("vdsr_lr", {"nf": 8, "nb": 1}), "vdsr_lr", {"nf": 8, "nb": 1}, root / "sr.pt")
    lr = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    save_rgb(lr, root / "lr" / "a.png")
    save_rgb(np.repeat(np.repeat(lr, 8, 0), 8, 1), root / "hr8" / "a.png")  # 8x, not 4x
    save_rgb(lr, root / "other" / "b.png")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (root / "notes.txt").write_text("not a checkpoint")
    (root / "broken.yaml").write_text("max_steps: 5\ndata: {root: x\nseed: 1\n")  # an unclosed flow mapping
    save_rgb(lr, root / "photo.png")
    (root / "empty").mkdir()
    shutil.copytree(demo_data, root / "broken_demo")
    (root / "broken_demo" / "real_lr" / "zz.png").write_bytes((root / "bad.png").read_bytes())
    shutil.copytree(demo_data, root / "no_real_lr_demo")
    for photo in (root / "no_real_lr_demo" / "real_lr").iterdir():
        photo.unlink()
    return {"root": root, "demo": demo_data}


def train(*overrides: str) -> Callable[[Path, dict], list[str]]:
    def argv(out: Path, files: dict) -> list[str]:
        common = [f"data.root={files['demo']}", f"output_dir={out}", "wandb.mode=disabled", "data.num_workers=0"]
        return [
            "train",
            "--config",
            "configs/demo.yaml",
            *common,
            *(o.replace("{root}", str(files["root"])) for o in overrides),
        ]

    return argv


def cmd(*args: str) -> Callable[[Path, dict], list[str]]:
    def argv(out: Path, files: dict) -> list[str]:
        return [a.format(out=out, root=files["root"]) for a in args]

    return argv


CASES = [
    ("unknown key", train("max_step=5"), "unknown config key 'max_step'; valid keys here: output_dir, seed, max_steps"),
    ("wrong type", train("max_steps=many"), "max_steps: expected an integer, got 'many'"),
    ("not one of a union", train("train.batched_calls=maybe"), "'maybe' matches none of bool or 'auto'"),
    (
        "batched calls with BatchNorm where they concatenate",
        train("train.batched_calls=true", "model.discriminator.args.norm=batch"),
        "changes BatchNorm statistics; networks with BatchNorm: ['disc_clean', 'disc_real']",
    ),
    ("out of range", train("checkpoint.keep=0"), "checkpoint.keep=0 must be at least 1"),
    ("patch vs scale", train("data.hr_patch=30"), "data.hr_patch=30 must be a positive multiple of data.scale=4"),
    ("missing config", cmd("train", "--config", "{root}/nope.yaml"), "config file not found: "),
    (
        "config: YAML syntax error",
        cmd("train", "--config", "{root}/broken.yaml"),
        "broken.yaml: not valid YAML at line 3, column 5 (expected ',' or '}', but got ':'): fix the file",
    ),
    (
        "override: YAML syntax error",
        train("data.value_range=[0, 1"),
        "override 'data.value_range=[0, 1': the value is not valid YAML at column 6; quote it or fix it",
    ),
    ("missing data folder", train("data.root=/nonexistent"), "data.root=/nonexistent: no hr/ folder"),
    (
        "corrupt real-LR photo (read to measure its JPEG quality)",
        train("data.root={root}/broken_demo"),
        "cannot read image",
    ),
    (
        "no real-LR photo to measure the JPEG quality on",
        train("data.root={root}/no_real_lr_demo"),
        "jpeg_quality: auto found no readable real-LR image in",
    ),
    (
        "missing shards",
        train("data.kind=webdataset", "data.hr_shards=/nonexistent/", "data.lr_shards=/nonexistent/"),
        "1 of 1 shards not found: /nonexistent/",
    ),
    (
        "unreachable shard server",
        train("data.kind=webdataset", "data.hr_shards=http://127.0.0.1:9/", "data.lr_shards=http://127.0.0.1:9/"),
        "cannot read http://127.0.0.1:9/manifest.json",
    ),
    ("unknown degradation", train("data.hr_to_lr=sharp"), "data.hr_to_lr='sharp': unknown degradation 'sharp'"),
    ("unknown network", train("model.sr.name=edsr"), "unknown super-resolution network 'edsr'; registered:"),
    (
        "bad network argument value",
        train("model.generator.args.block_padding=circular"),
        "translation generator network 'resnet': unknown block_padding 'circular'; valid: reflect, zero",
    ),
    ("unknown network argument", train("model.sr.args.depth=3"), "got unknown argument(s) ['depth']"),
    (
        "JPEG quality not a number",
        train("model.generator.args.jpeg_quality=high"),
        "translation generator network 'resnet': JPEG quality must be a number in [10, 100] or a range [low, high] "
        "in it (or, in a training config, auto: the range measured on the real LR), got 'high'",
    ),
    (
        "JPEG quality rate not a positive number",
        train("model.generator.args.jpeg_quality_rate=fast"),
        "translation generator network 'resnet': JPEG quality rate must be a positive number, got 'fast'",
    ),
    (
        "JPEG stage outside the 8-bit range",
        train("model.generator.args.jpeg_quality=90", "data.value_range=[0,1]"),
        "jpeg_quality works on 8-bit values mapped to [-1, 1], but data.value_range is [0.0, 1.0]",
    ),
    (
        "batch vs processes",
        train("data.batch_size=3", "train.gradient_accumulation_steps=2"),
        "data.batch_size=3 is global and must be divisible",
    ),
    ("resume from a non-checkpoint", train("checkpoint.resume=/tmp"), "checkpoint.resume='/tmp' is not a complete"),
    (
        "upscale: corrupt image",
        cmd("upscale", "--checkpoint", "{root}/sr.pt", "--out", "{out}", "{root}/bad.png"),
        "cannot read image",
    ),
    (
        "upscale: missing image",
        cmd("upscale", "--checkpoint", "{root}/sr.pt", "--out", "{out}", "{root}/gone.png"),
        "input not found",
    ),
    (
        "upscale: --out where a file is",
        cmd("upscale", "--checkpoint", "{root}/sr.pt", "--out", "{root}/notes.txt/sr", "{root}/photo.png"),
        "--out {root}/notes.txt/sr: cannot create this folder (Not a directory); choose another",
    ),
    (
        "upscale: negative tile",
        cmd("upscale", "--checkpoint", "{root}/sr.pt", "--tile", "-5", "--out", "{out}", "{root}/photo.png"),
        "argument --tile: must be 0 or more LR pixels, got -5",
    ),
    (
        "eval: overlap not a number",
        cmd("eval", "--checkpoint", "{root}/sr.pt", "--lr", "{root}/lr", "--hr", "{root}/lr", "--overlap", "x"),
        "argument --overlap: expected a whole number of LR pixels, got 'x'",
    ),
    (
        "export: a PNG",
        cmd("export", "--checkpoint", "{root}/photo.png", "--out", "{out}/sr.pt"),
        "is not an exported SR network",
    ),
    (
        "export: a text file",
        cmd("export", "--checkpoint", "{root}/notes.txt", "--out", "{out}/sr.pt"),
        "is not an exported SR network",
    ),
    (
        "export: no checkpoint",
        cmd("export", "--checkpoint", "{root}/empty", "--out", "{out}/sr.pt"),
        "no complete checkpoint at",
    ),
    (
        "eval: 8x HR for a 4x net",
        cmd("eval", "--checkpoint", "{root}/sr.pt", "--lr", "{root}/lr", "--hr", "{root}/hr8"),
        "not a x4 pair (pass --crop-hr",
    ),
    (
        "eval: no pairs",
        cmd("eval", "--checkpoint", "{root}/sr.pt", "--lr", "{root}/lr", "--hr", "{root}/other"),
        "has an HR image of the same name",
    ),
    (
        "shard: missing folder",
        cmd("data", "shard", "--hr", "{root}/nope", "--lr", "{root}/lr", "--out", "{out}"),
        "image folder not found",
    ),
    ("checkpoints: not a run", cmd("checkpoints", "list", "{root}/empty"), "no checkpoints under"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_exit_2_nothing_written(files: dict, tmp_path: Path, argv, message: str) -> None:
    out = tmp_path / "out"
    result = cli(*argv(out, files))
    assert result.returncode == 2, result.stdout[-1500:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message.replace("{root}", str(files["root"])) in errors[0], result.stderr[-3000:]
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


def test_debug_shows_the_traceback(files: dict, tmp_path: Path) -> None:
    result = cli("--debug", "export", "--checkpoint", str(files["root"] / "notes.txt"), "--out", str(tmp_path / "x"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "BadInput" in result.stderr
