"""The unpaired monitor's statistics (cyclesr_dist.cyclesr.unpaired) move the way the degradations they detect
should move them, on real photos (scikit-image's), comparing sets of *different* scenes as the monitor does."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data as skdata

from cyclesr_dist.cyclesr import unpaired
from cyclesr_dist.data.images import uint8_to_model
from cyclesr_dist.metrics import psnr


def _crop(img: np.ndarray, side: int = 192) -> np.ndarray:
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2])


@pytest.fixture(scope="module")
def real_set() -> list[np.ndarray]:
    return [_crop(skdata.astronaut()), _crop(skdata.rocket())]


@pytest.fixture(scope="module")
def other_set() -> list[np.ndarray]:
    return [_crop(skdata.chelsea()), _crop(skdata.coffee())]


def _t(images: list[np.ndarray]) -> list[torch.Tensor]:
    return [uint8_to_model(i) for i in images]


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return img
    out = gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()


def test_spectral_distance_grows_with_blur(real_set: list[np.ndarray], other_set: list[np.ndarray]) -> None:
    distances = [
        unpaired.spectral_band_distance(_t([_blur(i, s) for i in other_set]), _t(real_set)) for s in (0, 0.8, 1.6, 3)
    ]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > distances[0] + 5  # dB: a σ = 3 px blur removes most of the upper bands
    # a set against itself: 0
    assert unpaired.spectral_band_distance(_t(real_set), _t(real_set)) == pytest.approx(0, abs=1e-9)


def test_band_log_power_blur_lowers_high_bands_only(other_set: list[np.ndarray]) -> None:
    delta = unpaired.band_log_power(_t([_blur(i, 1.5) for i in other_set])) - unpaired.band_log_power(_t(other_set))
    assert abs(float(delta[0])) < 1.5
    assert float(delta[-1]) < -15


def test_noise_floor_reads_the_added_noise_std() -> None:
    flat = np.full((128, 160, 3), 120, dtype=np.uint8)
    assert unpaired.noise_floor(_t([flat])) < 0.5  # only 8-bit rounding
    # the same noise in R, G and B, so the grey image carries σ = 6 (independent channels would average down)
    rng = np.random.default_rng(1)
    noisy = np.clip(120 + rng.normal(0, 6, (128, 160, 1)).repeat(3, axis=2), 0, 255).round().astype(np.uint8)
    assert unpaired.noise_floor(_t([noisy])) == pytest.approx(6, rel=0.15)


def test_added_noise_raises_the_noise_floor_ratio(real_set: list[np.ndarray], other_set: list[np.ndarray]) -> None:
    ratios = [
        unpaired.noise_floor(_t([_noisy(i, s) for i in other_set])) / unpaired.noise_floor(_t(real_set))
        for s in (0, 4, 10)
    ]
    assert ratios[0] < ratios[1] < ratios[2], ratios
    assert ratios[2] > 2
    assert unpaired.noise_floor_log_ratio(_t([_noisy(i, 10) for i in other_set]), _t(real_set)) > math.log(2)


def test_jpeg_raises_blockiness(real_set: list[np.ndarray], other_set: list[np.ndarray]) -> None:
    clean = unpaired.blockiness(_t(other_set))
    assert abs(clean) < 0.05, clean
    q30 = unpaired.blockiness(_t([_jpeg(i, 30) for i in other_set]))
    q90 = unpaired.blockiness(_t([_jpeg(i, 90) for i in other_set]))
    assert q30 > q90 > clean - 0.01
    assert q30 > 0.15, q30
    # against a JPEG q30 real set, the JPEG'd generated set is closer than the clean one
    real_q30 = _t([_jpeg(i, 30) for i in real_set])
    assert unpaired.blockiness_difference(_t([_jpeg(i, 30) for i in other_set]), real_q30) < (
        unpaired.blockiness_difference(_t(other_set), real_q30)
    )


def test_desaturation_raises_colour_distance(real_set: list[np.ndarray]) -> None:
    grey = [np.repeat(i.mean(axis=2, keepdims=True), 3, axis=2).round().astype(np.uint8) for i in real_set]
    half = [((i.astype(np.float64) + g) / 2).round().astype(np.uint8) for i, g in zip(real_set, grey, strict=True)]
    d = [unpaired.colour_distance(_t(s), _t(real_set)) for s in (real_set, half, grey)]
    assert d[0] == pytest.approx(0, abs=1e-12)
    assert d[0] < d[1] < d[2]


def test_mean_psnr_is_the_mean_of_psnr(real_set: list[np.ndarray]) -> None:
    noisy = [_noisy(i, 5, seed=k) for k, i in enumerate(real_set)]
    want = np.mean([psnr(uint8_to_model(a), uint8_to_model(b), 4) for a, b in zip(noisy, real_set, strict=True)])
    assert unpaired.mean_psnr(_t(noisy), _t(real_set), 4) == pytest.approx(want)
    with pytest.raises(ValueError):
        unpaired.mean_psnr(_t(noisy), _t(real_set[:1]), 4)
