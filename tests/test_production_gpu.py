"""benchmarks/production_gpu.py, the GPU part that trains configs/cyclesr.yaml at its own crops: its data pack keeps
the HR pixels exactly (lossless WebP) and its trainer config is configs/cyclesr.yaml with only the data source,
stages, budget and bookkeeping changed. The training itself runs on a lent GPU (gpu_perf.sh production); it was
rehearsed on this CPU at LR 32², batch 2 (BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

from cyclesr_dist.config import load_config
from cyclesr_dist.data.images import list_images, load_rgb, save_rgb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import production_gpu  # noqa: E402


def _suite_operator(root: Path) -> None:
    rng = np.random.default_rng(0)
    for sub, side, n in (("hr", 64, 2), ("real_lr", 16, 2), ("test/hr", 64, 1), ("test/lr", 16, 1)):
        for i in range(n):
            save_rgb(rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8), root / "blur" / sub / f"s{i}.png")


def test_pack_keeps_the_hr_pixels(tmp_path: Path) -> None:
    _suite_operator(tmp_path / "data")
    production_gpu.pack("blur", tmp_path / "data", tmp_path / "gpu")
    packed = list_images(tmp_path / "gpu" / "blur" / "hr")
    assert [p.suffix for p in packed] == [".webp", ".webp"]
    for p in packed:
        assert np.array_equal(load_rgb(p), load_rgb(tmp_path / "data" / "blur" / "hr" / f"{p.stem}.png"))
    assert len(list_images(tmp_path / "gpu" / "blur" / "test" / "lr")) == 1


def test_trainer_config_is_the_production_config_but_for_data_and_budget(tmp_path: Path) -> None:
    args = argparse.Namespace(
        data=tmp_path / "gpu" / "blur", steps=700, steps_per_epoch=0, num_workers=2, hr_patch=0, batch_size=0,
        log_every=20, every=100,
    )  # fmt: skip
    config = production_gpu.trainer_config(args, tmp_path / "run")
    production = yaml.safe_load(production_gpu.PRODUCTION.read_text())
    for section in ("model", "loss"):
        assert config[section] == production[section]
    assert config["optim"] == production["optim"] and config["train"]["mixed_precision"] == "bf16"
    assert (config["data"]["hr_patch"], config["data"]["batch_size"]) == (480, 64)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)  # the trainer's own validation accepts it
    assert loaded.data.kind == "folder" and loaded.max_steps == 700
