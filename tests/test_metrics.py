"""PSNR / SSIM (RGB and Y) and best-shift PSNR against hand-computed values and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity

from cyclesr_dist.data.images import uint8_to_model
from cyclesr_dist.metrics import best_shift, best_shift_psnr, image_metrics, psnr, psnr_y, rgb_to_y, ssim, ssim_y


def _const(value: int | tuple[int, int, int], h: int = 24, w: int = 20) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (h, w, 3)).copy()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo crop (scikit-image's astronaut), 96x128."""
    return skdata.astronaut()[100:196, 150:278].copy()


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def _t64(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float64 CHW in [-1, 1]: exact enough to compare the algorithms at 1e-9 (float32 inputs, as
    from `uint8_to_model`, carry ~1e-7 relative rounding, i.e. ~1e-6 dB / ~1e-8 SSIM)."""
    return torch.from_numpy(img).permute(2, 0, 1).double() / 127.5 - 1.0


def _y255(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y on the [0, 255] scale, float (no rounding), by hand."""
    rgb = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def test_psnr_constant_offset() -> None:
    hr, sr = uint8_to_model(_const(100)), uint8_to_model(_const(110))
    expected = 20 * math.log10(255 / 10)  # MSE = (10/255)^2
    assert psnr(sr, hr) == pytest.approx(expected, abs=1e-6)
    assert psnr(sr.unsqueeze(0), hr.unsqueeze(0), shave=4) == pytest.approx(expected, abs=1e-6)
    assert psnr(hr, hr) == math.inf


def test_psnr_y_constant_offset() -> None:
    # An offset of d in all of R, G, B moves Y by d * (65.481 + 128.553 + 24.966) / 255 = d * 219 / 255.
    hr, sr = uint8_to_model(_const(60)), uint8_to_model(_const(80))
    expected = 20 * math.log10(255 / (20 * 219 / 255))
    assert psnr_y(sr, hr) == pytest.approx(expected, abs=1e-5)  # inputs are float32 in [-1, 1]


def test_rgb_to_y_hand_computed_pixel() -> None:
    # (255, 128, 0): 16 + 65.481 + 128.553 * 128/255 + 0 = 146.0097...
    pixel = torch.tensor([255.0, 128.0, 0.0], dtype=torch.float64).view(3, 1, 1) / 255.0
    assert rgb_to_y(pixel).item() * 255 == pytest.approx(16 + 65.481 + 128.553 * 128 / 255, abs=1e-9)
    # white -> 235, black -> 16 (the studio range)
    assert rgb_to_y(torch.ones(3, 1, 1)).item() * 255 == pytest.approx(235.0)
    assert rgb_to_y(torch.zeros(3, 1, 1)).item() * 255 == pytest.approx(16.0)


def test_psnr_y_matches_numpy_on_photo(photo: np.ndarray) -> None:
    sr = _noisy(photo, 6.0)
    mse = np.mean((_y255(sr)[4:-4, 4:-4] - _y255(photo)[4:-4, 4:-4]) ** 2)
    expected = 10 * math.log10(255**2 / mse)
    assert psnr_y(_t64(sr), _t64(photo), shave=4) == pytest.approx(expected, abs=1e-9)
    assert psnr_y(uint8_to_model(sr), uint8_to_model(photo), shave=4) == pytest.approx(expected, abs=1e-5)


def test_ssim_identical_is_one(photo: np.ndarray) -> None:
    t = uint8_to_model(photo)
    assert ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    assert ssim_y(t, t, shave=4) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shave", [0, 4])
def test_ssim_matches_skimage(photo: np.ndarray, shave: int) -> None:
    sr = _noisy(photo, 12.0)
    s = slice(shave, -shave) if shave else slice(None)
    settings = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ref_rgb = structural_similarity(
        sr[s, s].astype(np.float64), photo[s, s].astype(np.float64), channel_axis=2, data_range=255, **settings
    )
    ref_y = structural_similarity(_y255(sr)[s, s], _y255(photo)[s, s], data_range=255, **settings)
    a, b = _t64(sr), _t64(photo)
    assert 0.3 < ref_rgb < 0.99  # a non-trivial comparison
    assert ssim(a, b, shave=shave) == pytest.approx(ref_rgb, abs=1e-9)
    assert ssim_y(a, b, shave=shave) == pytest.approx(ref_y, abs=1e-9)
    assert ssim(uint8_to_model(sr), uint8_to_model(photo), shave=shave) == pytest.approx(ref_rgb, abs=1e-6)


def test_shave_drops_the_border(photo: np.ndarray) -> None:
    sr = photo.copy()
    sr[:4] = 0
    sr[:, -3:] = 255
    a, b = uint8_to_model(sr), uint8_to_model(photo)
    assert math.isfinite(psnr(a, b)) and psnr(a, b, shave=4) == math.inf
    assert ssim(a, b) < 1.0 and ssim(a, b, shave=4) == pytest.approx(1.0)
    assert psnr_y(a, b, shave=4) == math.inf and ssim_y(a, b, shave=4) == pytest.approx(1.0)


def test_size_errors() -> None:
    a, b = uint8_to_model(_const(0, 24, 20)), uint8_to_model(_const(0, 24, 21))
    for fn in (psnr, psnr_y, ssim, ssim_y, best_shift_psnr):
        with pytest.raises(ValueError, match="shapes differ"):
            fn(a, b)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(a, a, shave=10)
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(a, a, shave=5)  # 14x10 left
    with pytest.raises(ValueError, match="one image"):
        best_shift_psnr(torch.stack([a, a]), torch.stack([a, a]), max_shift=2)


def _reference_find_best_psnr(hr: torch.Tensor, sr: torch.Tensor, k: int) -> float:
    """The reference validation's find_best_PSNR (crop_size = k), on [0, 1] tensors, in float64."""
    sr_crop = sr[:, k:-k, k:-k]
    best = -math.inf
    for i in range(2 * k + 1):
        for j in range(2 * k + 1):
            hr_crop = hr[:, i : i + sr_crop.shape[1], j : j + sr_crop.shape[2]]
            best = max(best, (20 * torch.log10(1 / torch.sqrt(torch.mean((hr_crop - sr_crop) ** 2)))).item())
    return best


@pytest.mark.parametrize("dy,dx", [(3, -2), (-5, 5), (0, 0)])
def test_best_shift_finds_a_known_shift(photo: np.ndarray, dy: int, dx: int) -> None:
    hr = uint8_to_model(photo)
    sr = torch.roll(hr, shifts=(-dy, -dx), dims=(1, 2))  # sr[y, x] = hr[y + dy, x + dx] away from the wrap
    value, got_dy, got_dx = best_shift(sr, hr, max_shift=5)
    assert (got_dy, got_dx) == (dy, dx) and value == math.inf
    noisy = uint8_to_model(_noisy(model_uint8(sr), 5.0))
    value, got_dy, got_dx = best_shift(noisy, hr, max_shift=5)
    assert (got_dy, got_dx) == (dy, dx)
    unit = lambda t: t.double().add(1).mul(0.5)  # noqa: E731
    assert value == pytest.approx(_reference_find_best_psnr(unit(hr), unit(noisy), 5), abs=1e-9)
    assert best_shift_psnr(noisy, hr.unsqueeze(0), max_shift=5) == value
    if (dy, dx) != (0, 0):
        assert value > psnr(noisy, hr, shave=5) + 3.0


@pytest.mark.parametrize(("dy", "dx"), [(0.5, 0.5), (-1.5, 0.5), (2.0, -1.0)])
def test_half_pixel_best_shift_finds_a_sub_pixel_grid_offset(photo: np.ndarray, dy: float, dx: float) -> None:
    """An SR image whose grid sits half a pixel off (a camera's sampling phase) scores far better on the half-pixel
    grid than on the integer one, and the offset found is the one put in; an integer offset is found on both."""
    from scipy import ndimage

    hr01 = ndimage.gaussian_filter(photo.astype(np.float64) / 255, (1.5, 1.5, 0))  # resampling needs no aliasing
    sr01 = ndimage.shift(hr01, (-dy, -dx, 0), order=5, mode="mirror")  # sr[y, x] = hr[y + dy, x + dx]
    hr, sr = (torch.from_numpy(t).permute(2, 0, 1) * 2 - 1 for t in (hr01, sr01))
    value, got_dy, got_dx = best_shift(sr, hr, max_shift=3, shave=4, subpixel=2)
    assert (got_dy, got_dx) == (dy, dx)
    integer = best_shift_psnr(sr, hr, max_shift=3, shave=4)
    assert value > 45 and (value > integer + 10 if dy % 1 else value >= integer - 1e-9)
    assert best_shift_psnr(hr, hr, max_shift=3, shave=4, subpixel=4) == math.inf  # no shift needed, none made


def model_uint8(t: torch.Tensor) -> np.ndarray:
    return t.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def test_best_shift_border_rules(photo: np.ndarray) -> None:
    hr = uint8_to_model(photo)
    sr = uint8_to_model(_noisy(photo, 8.0))
    # max_shift = 0 is plain PSNR with the same shave; a larger shave than max_shift widens the dropped border.
    assert best_shift_psnr(sr, hr, max_shift=0, shave=4) == pytest.approx(psnr(sr, hr, shave=4), abs=1e-9)
    assert best_shift_psnr(sr, hr, max_shift=2, shave=4) >= psnr(sr, hr, shave=4) - 1e-9
    assert best_shift(sr, hr, max_shift=3, channel="y")[1:] == (0, 0)


def test_image_metrics_keys(photo: np.ndarray) -> None:
    a, b = uint8_to_model(_noisy(photo, 4.0)), uint8_to_model(photo)
    assert set(image_metrics(a, b, shave=4)) == {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}
    m = image_metrics(a, b, shave=4, max_shift=3)
    assert m["psnr_rgb_best_shift"] >= m["psnr_rgb"] - 1e-9
    assert m["psnr_y"] > m["psnr_rgb"]  # Y averages the independent channel noise
