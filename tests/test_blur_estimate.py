"""Measuring how much blurrier the real LR is than the HR photos' bicubic LR, and `input_blur: auto`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from cyclesr_dist.cyclesr.blur_estimate import clean_lr, estimate_input_blur, gaussian_blurred
from cyclesr_dist.data.images import save_rgb
from cyclesr_dist.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def clean_photos() -> list[np.ndarray]:
    return [clean_lr(p, 4) for p in PHOTOS]


def degraded(sigma: float, photos: list[np.ndarray] = PHOTOS) -> list[np.ndarray]:
    """The photos' bicubic LR blurred by σ and saved as 8-bit, as a real LR file would be."""
    clean = [clean_lr(p, 4) for p in photos]
    blurred = gaussian_blurred(clean, sigma) if sigma else clean
    return [np.clip(np.rint(img), 0, 255).astype(np.uint8) for img in blurred]


@pytest.mark.parametrize("sigma", [0.45, 0.6, 0.9])
def test_estimate_finds_the_blur_added_to_the_same_scenes(sigma):
    found = estimate_input_blur(clean_photos(), degraded(sigma))
    assert abs(found["sigma"] - sigma) <= 0.03, found
    assert found["real_width"] > found["clean_width"]


def test_no_blur_a_blur_below_resolution_or_sharper_real_lr_gives_none():
    assert estimate_input_blur(clean_photos(), degraded(0))["sigma"] == 0
    assert estimate_input_blur(clean_photos(), degraded(0.25))["sigma"] == 0  # widens the edges by under 1 %
    clean = [clean_lr(p, 4).astype(np.float64) for p in PHOTOS]
    blurred = gaussian_blurred(clean, 1.0)
    sharpened = [np.clip(2 * c - b, 0, 255).astype(np.uint8) for c, b in zip(clean, blurred, strict=True)]
    assert estimate_input_blur(clean_photos(), sharpened)["sigma"] == 0
    # nothing to measure: flat or tiny images have no edge, so no blur is claimed (and nothing fails)
    flat, tiny = np.full((64, 64, 3), 128, np.uint8), [p[:8, :8] for p in degraded(0.6)]
    assert estimate_input_blur([flat], degraded(0.6))["sigma"] == 0
    assert estimate_input_blur(tiny, degraded(0.6))["sigma"] == 0
    assert estimate_input_blur(clean_photos(), [flat])["sigma"] == 0


def test_unpaired_scenes_still_order_the_blurs():
    """Different scenes on the two sides (what a user has): the estimate still grows with the true blur."""
    found = [estimate_input_blur(clean_photos()[:2], degraded(s, PHOTOS[2:]))["sigma"] for s in (0.6, 0.9, 1.2)]
    assert found == sorted(found) and found[0] > 0.3, found


def photo_root(tmp_path: Path, sigma: float) -> Path:
    """A folder-kind data root: the photos as HR, their LR blurred by σ as the real LR."""
    root = tmp_path / "data"
    for i, (photo, lr) in enumerate(zip(PHOTOS, degraded(sigma), strict=True)):
        save_rgb(photo, root / "hr" / f"{i}.png")
        save_rgb(lr, root / "real_lr" / f"{i}.png")
    return root


def _auto_config(root: Path, *more: str):
    from cyclesr_dist.config import load_config
    from cyclesr_dist.cyclesr.measured import with_measured_recipe

    # the real LR here is the photos' bicubic LR blurred, so G's clean LR is bicubic's too (the demo's is sampled)
    overrides = [f"data.root={root}", "data.hr_to_lr=bicubic", "model.generator.args.input_blur=auto", *more]
    return with_measured_recipe(load_config(ROOT / "configs" / "demo.yaml", overrides))


def test_training_config_auto_measures_folder_and_shards(tmp_path, capsys):
    """`input_blur: auto` becomes the σ the photos show (whole files or shard crops), as G's first layer."""
    from cyclesr_dist.cyclesr import build_networks
    from cyclesr_dist.data.shards import write_shards

    root = photo_root(tmp_path, 0.6)
    config = _auto_config(root)
    sigma = config.model.generator.args["input_blur"]
    assert abs(sigma - 0.6) <= 0.03
    assert f"G blurs its input by a Gaussian of σ {sigma:.2f} LR px" in capsys.readouterr().out
    assert build_networks(config.model)["gen_clean_to_real"].input_blur is not None
    # shards hold crops: fewer edges per image, the same answer within a few hundredths
    write_shards(root / "hr", root / "real_lr", tmp_path / "shards", hr_crop=256, lr_crop=64, workers=1)
    shards = str(tmp_path / "shards")
    crops = _auto_config(root, "data.kind=webdataset", f"data.hr_shards={shards}", f"data.lr_shards={shards}")
    assert abs(crops.model.generator.args["input_blur"] - 0.6) <= 0.1
    # the real LR no blurrier than the clean LR: the stage is off and says so
    for i, lr in enumerate(degraded(0)):
        save_rgb(lr, root / "real_lr" / f"{i}.png")
    assert _auto_config(root).model.generator.args["input_blur"] == 0
    assert "no blur to add, G's input blur off" in capsys.readouterr().out
    # a number is the user's choice and left alone
    assert _auto_config(root, "model.generator.args.input_blur=0.25").model.generator.args["input_blur"] == 0.25


def test_auto_without_a_readable_hr_image_is_one_line_naming_the_shards(tmp_path):
    from cyclesr_dist.data.shards import write_shards

    root = photo_root(tmp_path, 0.6)
    write_shards(root / "hr", root / "real_lr", tmp_path / "shards", hr_crop=256, lr_crop=64, workers=1)
    broken = tmp_path / "broken-hr-000000.tar"
    broken.write_bytes(b"not a tar archive")  # skipped as training skips it; nothing else is left to measure
    shards = ["data.kind=webdataset", f"data.hr_shards={broken}", f"data.lr_shards={tmp_path / 'shards'}"]
    with pytest.raises(BadInput, match=r"input_blur: auto found no readable HR image in data.hr_shards=.*broken"):
        _auto_config(root, *shards)


def test_a_wrong_generator_argument_is_reported_before_the_photos_are_read(tmp_path):
    """The measurements read up to 48 photos per domain; a typo in the networks' arguments must not wait for
    them: here there is no photo at all, and the message is the typo's, not the missing photos'."""
    from cyclesr_dist.config import load_config
    from cyclesr_dist.cyclesr.measured import with_measured_recipe

    empty = tmp_path / "data"
    (empty / "hr").mkdir(parents=True)
    (empty / "real_lr").mkdir()
    overrides = [f"data.root={empty}", "model.generator.args.input_blur=auto", "model.generator.args.jpeg_quality=auto"]
    with pytest.raises(BadInput, match=r"found no readable"):  # the arguments are right: the photos are missing
        with_measured_recipe(load_config(ROOT / "configs" / "demo.yaml", overrides))
    with pytest.raises(BadInput, match=r"unknown argument\(s\) \['n_blokcs'\]"):
        with_measured_recipe(
            load_config(ROOT / "configs" / "demo.yaml", [*overrides, "model.generator.args.n_blokcs=2"])
        )
