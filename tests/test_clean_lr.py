"""The clean LR CycleSR's G is given (`data.hr_to_lr`: `images.CLEAN_LR`): where its pixels sit, what the
`sampled` kind keeps that antialiased bicubic removes, and that training, validation and `input_blur: auto` all
make it the same way."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from cyclesr_dist.config import ConfigError
from cyclesr_dist.cyclesr.blur_estimate import clean_lr
from cyclesr_dist.cyclesr.validation import validate_translation
from cyclesr_dist.data.augment import HrToLr
from cyclesr_dist.data.images import (
    CLEAN_LR,
    SAMPLED_SIGMA,
    clean_downscale,
    clean_lr_kind,
    save_rgb,
    uint8_to_model,
)
from cyclesr_dist.torch_utils import filter2d, gaussian_kernel

ROOT = Path(__file__).resolve().parents[1]


def _columns(values: np.ndarray) -> torch.Tensor:
    """A 1×3×64×W image whose every row is `values` (in [-1, 1])."""
    row = torch.as_tensor(values, dtype=torch.float32)
    return row.expand(1, 3, 64, -1).contiguous()


@pytest.mark.parametrize("kind", CLEAN_LR)
def test_every_kind_samples_on_bicubics_grid(kind: str) -> None:
    """On a linear ramp any symmetric sampling kernel returns the ramp's value at its centre: LR pixel i at HR
    s·i + (s−1)/2. A grid shifted by a pixel (or half of one) would be off by the ramp's slope (or half of it)."""
    slope = 1.0 / 256
    hr = _columns(np.arange(256) * slope - 0.5)
    lr = clean_downscale(hr, 4, kind)[0, 0, 8, 4:-4]  # away from the reflected border
    centres = (np.arange(4, 60) * 4 + 1.5) * slope - 0.5
    assert np.abs(lr.numpy() - centres).max() < slope / 20


def test_sampled_keeps_the_aliasing_bicubic_removes() -> None:
    """A stripe pattern above the LR's Nyquist frequency (period 5 HR px at ×4: 0.8 cycles per LR px) folds into
    the sampled LR, as it does in a point decimation or a camera's sampling; antialiased bicubic wipes it out."""
    stripes = 0.5 * np.cos(2 * math.pi * np.arange(320) / 5)
    contrast = {kind: float(clean_downscale(_columns(stripes), 4, kind)[0, 0, 8, 4:-4].std()) for kind in CLEAN_LR}
    assert contrast["sampled"] > 0.1  # a Gaussian of σ 1 HR px and the 2-tap centre keep ~0.37 of it
    assert contrast["bicubic"] < contrast["sampled"] / 5


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(96, 96), (97, 130), (9, 8)])
def test_sampled_is_the_blur_then_the_cell_centres(scale: int, size: tuple[int, int]) -> None:
    """`sampled` is computed only where it is sampled; it must equal its definition, computed the long way: the
    Gaussian over every HR pixel (reflect-padded), then bilinear without antialiasing. Odd sizes included."""
    hr = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(scale)) * 2 - 1
    blurred = filter2d(hr, gaussian_kernel(SAMPLED_SIGMA))
    long_way = F.interpolate(blurred, scale_factor=1 / scale, mode="bilinear", antialias=False, align_corners=False)
    torch.testing.assert_close(clean_downscale(hr, scale, "sampled"), long_way.clamp(-1, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(clean_downscale(hr[0], scale, "sampled"), long_way[0].clamp(-1, 1), rtol=0, atol=1e-6)


def test_training_crops_use_the_kind_and_an_unknown_name_lists_them() -> None:
    hr_patch = data.astronaut()[:96, :96]
    pair = HrToLr("sampled", 4)(hr_patch, np.random.default_rng(0))
    assert torch.equal(pair["clean_lr"], clean_downscale(uint8_to_model(hr_patch), 4, "sampled"))
    assert not torch.equal(pair["clean_lr"], clean_downscale(uint8_to_model(hr_patch), 4, "bicubic"))
    with pytest.raises(ConfigError, match=r"data.hr_to_lr='sharp'.*\(or a clean LR: bicubic, sampled\)"):
        HrToLr("sharp", 4)
    with pytest.raises(ValueError, match="unknown clean LR 'sharp'; valid: bicubic, sampled"):
        clean_downscale(uint8_to_model(hr_patch), 4, "sharp")
    assert clean_lr_kind("sampled") == "sampled" and clean_lr_kind("realesrgan") == "bicubic"


def test_validation_compares_with_the_runs_own_clean_lr() -> None:
    """When the true LR *is* the sampled clean LR, validation's clean-LR row matches it exactly with kind sampled
    and not with bicubic: validation makes the clean LR the run's way, not always bicubic's."""
    hr = data.astronaut()[:256, :256]
    pairs = [("astronaut", clean_lr(hr, 4, "sampled"), hr)]
    identity = torch.nn.Conv2d(3, 3, 1, bias=False)  # a G that changes nothing (and has a device to run on)
    torch.nn.init.dirac_(identity.weight)
    same = validate_translation(identity, pairs, 4, "sampled")
    other = validate_translation(identity, pairs, 4, "bicubic")
    assert same["val/clean_lr_psnr"] > 60 > other["val/clean_lr_psnr"]


def test_input_blur_auto_measures_against_the_runs_clean_lr(tmp_path: Path, capsys) -> None:
    """The real LR here is the photos' sampled LR itself: measured against that kind there is no blur to add;
    bicubic's LR has sharper edges (its negative lobes), so G's input would need one to look like it. The printed
    line names the kind measured against."""
    from cyclesr_dist.config import load_config
    from cyclesr_dist.cyclesr.measured import with_measured_recipe

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i, photo in enumerate(photos):
        save_rgb(photo, tmp_path / "hr" / f"{i}.png")
        save_rgb(clean_lr(photo, 4, "sampled"), tmp_path / "real_lr" / f"{i}.png")
    for kind in CLEAN_LR:
        overrides = [f"data.root={tmp_path}", "model.generator.args.input_blur=auto", f"data.hr_to_lr={kind}"]
        config = with_measured_recipe(load_config(ROOT / "configs" / "demo.yaml", overrides))
        sigma = config.model.generator.args["input_blur"]
        assert f"on the {kind} LR of 4 HR images" in capsys.readouterr().out
        assert (sigma == 0) if kind == "sampled" else (sigma > 0.2)
