"""Measuring the JPEG quality of real LR photos from their pixels, and G's JPEG stage drawing from that range."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from cyclesr_dist.data.images import save_rgb, uint8_to_model
from cyclesr_dist.data.jpeg_estimate import _FREQUENCIES, estimate_quality, luma_table, quality_summary
from cyclesr_dist.models.jpeg import DifferentiableJPEG

ROOT = Path(__file__).resolve().parents[1]


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def same_tables(a: int, b: int) -> bool:
    """Qualities whose tables agree at every frequency the estimate reads cannot be told apart, nor need to be."""
    return all(luma_table(a)[u, v] == luma_table(b)[u, v] for u, v in _FREQUENCIES)


@pytest.mark.parametrize("quality", [40, 72, 88])
def test_estimate_reads_the_quality_back_at_any_grid_phase(quality):
    photo = data.coffee()[100:260, 150:310]  # 160²
    decoded = jpeg_round_trip(photo, quality)
    assert same_tables(estimate_quality(decoded), quality)
    assert same_tables(estimate_quality(decoded[3:, 5:]), quality)  # a crop off the file's 8×8 grid
    assert estimate_quality(photo) is None  # never compressed: no table fits


def test_summary_is_a_robust_range_and_none_without_jpeg():
    estimates = {f"{i}.png": q for i, q in enumerate([70, 75, 80, 85, 90] * 4)} | {"x.png": None}
    assert quality_summary(estimates) == {"low": 70, "median": 80, "high": 90, "images": 20}
    assert quality_summary({"a.png": None}) is None


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_prints_the_range_as_the_config_line_and_refuses_bad_folders_in_one_line(tmp_path):
    photo = data.astronaut()[::4, ::4]  # 128²
    jpeg_dir, png_dir, empty = tmp_path / "jpeg", tmp_path / "png", tmp_path / "empty"
    for i, quality in enumerate([75, 80, 85]):
        save_rgb(jpeg_round_trip(np.roll(photo, 8 * i, axis=1), quality), jpeg_dir / f"{i}.png")
    save_rgb(photo, png_dir / "clean.png")
    empty.mkdir()
    result = run_cli("data", "jpeg-quality", str(jpeg_dir))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("3 of 3 images JPEG-compressed") and "model.generator.args.jpeg_quality=[" in line
    low, high = (int(v) for v in line.split("jpeg_quality=[")[1].rstrip("]").split(","))
    assert same_tables(low, 75) or 75 < low <= 76
    assert same_tables(high, 85) or 84 <= high < 85
    result = run_cli("data", "jpeg-quality", str(png_dir))
    assert result.returncode == 0 and "leave model.generator.args.jpeg_quality off" in result.stdout
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cases = ((tmp_path / "nowhere", "image folder not found"), (empty, "no images in"), (corrupt, "broken.png"))
    for folder, message in cases:
        result = run_cli("data", "jpeg-quality", str(folder))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_stage_with_a_range_draws_a_quality_per_image_and_learns_none():
    stage = DifferentiableJPEG([60, 95])
    assert not list(stage.parameters())
    x = uint8_to_model(data.astronaut()[::8, ::8]).unsqueeze(0).repeat(4, 1, 1, 1)
    torch.manual_seed(0)
    out = stage(x)
    assert not torch.equal(out[0], out[1])  # same image, other quality
    for low_high, fixed in (([70, 70], 70), ([45, 45], 45)):  # a one-point range is that quality
        torch.manual_seed(1)
        drawn = DifferentiableJPEG(low_high)(x)
        torch.manual_seed(1)
        assert torch.equal(drawn, DifferentiableJPEG(fixed)(x))
    for bad in ([90, 70], [70], [5, 90], [70, 80, 90], "high"):
        with pytest.raises(ValueError, match="or a range"):
            DifferentiableJPEG(bad)


def test_training_config_auto_measures_the_real_lr_as_folder_and_as_shards(tmp_path, capsys):
    """`jpeg_quality: auto` becomes the range the real LR shows (whole files or shard crops), 0 without JPEG."""
    from cyclesr_dist.config import load_config
    from cyclesr_dist.cyclesr.measured import with_measured_recipe
    from cyclesr_dist.data.shards import write_shards

    root = tmp_path / "data"
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i, photo in enumerate(photos):
        save_rgb(photo[:256, :256], root / "hr" / f"{i}.png")
        for j, quality in enumerate([75, 80, 85]):
            save_rgb(jpeg_round_trip(photo[j * 40 : j * 40 + 200, :256], quality), root / "real_lr" / f"{i}_{j}.png")
    overrides = [f"data.root={root}", "model.generator.args.jpeg_quality=auto"]

    def measured(*more: str):
        config = with_measured_recipe(load_config(ROOT / "configs" / "demo.yaml", overrides + list(more)))
        return config.model.generator.args["jpeg_quality"]

    low, high = measured()
    assert same_tables(low, 75) and same_tables(high, 85)
    assert "measured on 12 of 12 real-LR images" in capsys.readouterr().out
    # shards: 120² crops (the default LR crop), fewer blocks per estimate than a whole file, so ±1 quality
    write_shards(root / "hr", root / "real_lr", tmp_path / "shards", hr_crop=128, lr_crop=120, lr_stride=40, workers=1)
    shards = str(tmp_path / "shards")
    crops = measured("data.kind=webdataset", f"data.hr_shards={shards}", f"data.lr_shards={shards}")
    assert abs(crops[0] - low) <= 1 and abs(crops[1] - high) <= 1
    for path in (root / "real_lr").glob("*.png"):  # never compressed: no table fits, the stage is switched off
        save_rgb(photos[0][:200, :256], path)
    assert measured() == 0 and "G's JPEG stage off" in capsys.readouterr().out
    # a number (learned from there) or a range is the user's choice and left alone
    assert measured("model.generator.args.jpeg_quality=90") == 90
