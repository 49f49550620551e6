"""The four operator families of the quality benchmark (parameters in the package docstring)."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import convolve2d

from .common import (
    add_noise,
    anisotropic_gaussian_kernel,
    box_taps,
    check_input,
    draw_phase,
    gaussian_2d,
    jpeg,
    no_more,
    pick,
    sample_grid,
    split_phase,
    to_uint8,
)


def degrade_real(
    hr: np.ndarray, rng: np.random.Generator, scale: int = 4, *, offset: tuple[int, int] | None = None
) -> np.ndarray:
    """HxWx3 uint8 -> (H//scale)x(W//scale)x3 uint8 with the degradation of the module docstring. `offset`
    (y, x) in {0..scale−1}: where decimation starts (default scale//2, the centre of each scale×scale cell)."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    img = hr[:h, :w].astype(np.float64)
    kernel = anisotropic_gaussian_kernel(rng.uniform(1.6, 2.4), rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
    oy, ox = (scale // 2, scale // 2) if offset is None else (int(offset[0]), int(offset[1]))
    if not (0 <= oy < scale and 0 <= ox < scale):
        raise ValueError(f"degrade_real: offset must lie in 0..{scale - 1} per axis, got {offset}")
    # = convolve(img, kernel, mode="reflect")[oy::scale, ox::scale] (the kernel is point-symmetric; scipy's
    # "reflect" is numpy's "symmetric"), equal to ~1e-12, computed at the kept pixels only.
    half = kernel.shape[0] // 2
    lr = sample_grid(img, kernel, (oy - half, ox - half), scale, border="symmetric")
    lr = lr + rng.normal(0.0, rng.uniform(2.0, 6.0), size=lr.shape)
    lr = np.clip(lr + 0.5, 0, 255).astype(np.uint8)
    return jpeg(lr, int(rng.integers(70, 91)))


def degrade_noise_jpeg(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """`degrade_real` with a random decimation start offset (y, x) ~ U{0..scale−1}² (fixed name: `offset`)."""
    check_input(hr, scale, "noise_jpeg")
    offset = pick(fixed, "offset", tuple(int(v) for v in rng.integers(0, scale, size=2)))
    no_more(fixed, "noise_jpeg", ("offset",))
    return degrade_real(hr, rng, scale, offset=offset)


def degrade_blur(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Blur-dominated: Gaussian blur (iso or aniso, σ 1–2.5 HR px), decimation at a random phase, mild noise,
    JPEG ≥ 85. Fixed names: sigma, angle, phase, noise, quality (module docstring)."""
    check_input(hr, scale, "blur")
    iso = rng.random() < 0.5
    s1, s2, angle = rng.uniform(1.0, 2.5), rng.uniform(1.0, 2.5), rng.uniform(0, np.pi)
    sigma = pick(fixed, "sigma", (s1, s1) if iso else (s1, s2))
    angle = pick(fixed, "angle", 0.0 if iso else angle)
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    noise = pick(fixed, "noise", rng.uniform(0.5, 2.0) / 255)
    quality = pick(fixed, "quality", int(rng.integers(85, 96)))
    no_more(fixed, "blur", ("sigma", "angle", "phase", "noise", "quality"))
    (y0, fy), (x0, fx) = split_phase(phase[0], scale), split_phase(phase[1], scale)
    kernel, t0 = gaussian_2d(sigma, angle, (fy, fx))
    img = hr.astype(np.float32) / 255
    lr = sample_grid(img, kernel.astype(np.float32), (y0 + t0, x0 + t0), scale)
    return jpeg(to_uint8(add_noise(lr, noise, rng)), quality)


def _bayer_masks(h: int, w: int) -> np.ndarray:
    """HxWx3 boolean: which colour each RGGB site records."""
    yy, xx = np.mgrid[:h, :w]
    r = (yy % 2 == 0) & (xx % 2 == 0)
    b = (yy % 2 == 1) & (xx % 2 == 1)
    return np.stack([r, ~(r | b), b], axis=-1)


_DEMOSAIC_RB = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=np.float32)
_DEMOSAIC_G = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], dtype=np.float32)


def _demosaic_bilinear(raw: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bilinear demosaic: each plane's missing sites are the mean of its nearest recorded neighbours."""
    out = np.empty(raw.shape + (3,), dtype=np.float32)
    for c, k in enumerate((_DEMOSAIC_RB, _DEMOSAIC_G, _DEMOSAIC_RB)):
        plane = np.pad(np.where(masks[..., c], raw, 0).astype(np.float32), 1, mode="reflect")
        out[..., c] = convolve2d(plane, k, mode="valid")
    return out


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(img.dtype)
    return correlate1d(correlate1d(img, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")


def degrade_camera(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Camera-like: optics blur, s×s pixel aperture at a random phase, RGGB mosaic, Poisson-Gaussian noise,
    bilinear demosaic, unsharp-mask sharpening, JPEG. Fixed names: sigma, phase, shot, read, amount, radius,
    quality (module docstring)."""
    check_input(hr, scale, "camera")
    sigma = pick(fixed, "sigma", rng.uniform(0.8, 1.6))
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    shot = pick(fixed, "shot", float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-3)))))
    read = pick(fixed, "read", rng.uniform(0.5, 2.0) / 255)
    amount = pick(fixed, "amount", rng.uniform(0.5, 1.2))
    radius = pick(fixed, "radius", rng.uniform(0.8, 1.6))
    quality = pick(fixed, "quality", int(rng.integers(70, 93)))
    no_more(fixed, "camera", ("sigma", "phase", "shot", "read", "amount", "radius", "quality"))
    (y0, fy), (x0, fx) = split_phase(phase[0], scale), split_phase(phase[1], scale)
    (by, ty), (bx, tx) = box_taps(scale, fy), box_taps(scale, fx)
    r = max(1, math.ceil(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    kernel = convolve2d(np.outer(g, g), np.outer(by, bx)).astype(np.float32)  # optics ⊛ pixel aperture
    img = hr.astype(np.float32) / 255
    lr = sample_grid(img, kernel, (y0 + ty - r, x0 + tx - r), scale)
    masks = _bayer_masks(*lr.shape[:2])
    raw = np.clip(np.sum(lr * masks, axis=-1), 0, 1)
    raw = rng.poisson(raw / shot).astype(np.float32) * np.float32(shot)
    raw = add_noise(raw, read, rng)
    rgb = _demosaic_bilinear(raw, masks)
    rgb = rgb + np.float32(amount) * (rgb - _gaussian_blur(rgb, radius))
    return jpeg(to_uint8(rgb), quality)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion blur: a segment of `length` px through the centre at `angle` (0 = along x, radians),
    sampled densely and splatted bilinearly onto an odd square grid; sums to 1."""
    r = math.ceil(length / 2) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1))
    t = np.linspace(-length / 2, length / 2, max(2, int(length * 16)))
    ys, xs = r + t * math.sin(angle), r + t * math.cos(angle)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return k / k.sum()


def degrade_downscale_motion(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Slight linear motion blur, then area or (non-antialiased) bilinear ×1/s at a random phase, light noise,
    JPEG. Fixed names: length, angle, downscaler, phase, noise, quality (module docstring)."""
    check_input(hr, scale, "downscale_motion")
    length = pick(fixed, "length", rng.uniform(2.0, 8.0))
    angle = pick(fixed, "angle", rng.uniform(0, np.pi))
    downscaler = pick(fixed, "downscaler", "area" if rng.random() < 0.5 else "bilinear")
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    noise = pick(fixed, "noise", rng.uniform(0.5, 2.0) / 255)
    quality = pick(fixed, "quality", int(rng.integers(80, 96)))
    no_more(fixed, "downscale_motion", ("length", "angle", "downscaler", "phase", "noise", "quality"))
    if downscaler not in ("area", "bilinear"):
        raise ValueError(f"downscale_motion: downscaler must be 'area' or 'bilinear', got {downscaler!r}")
    (y0, fy), (x0, fx) = split_phase(phase[0], scale), split_phase(phase[1], scale)
    if downscaler == "area":
        (wy, ty), (wx, tx) = box_taps(scale, fy), box_taps(scale, fx)
    else:  # value at the fractional position from its two neighbours per axis
        (wy, ty), (wx, tx) = (np.array([1 - fy, fy]), 0), (np.array([1 - fx, fx]), 0)
    m = motion_kernel(length, angle)
    r = m.shape[0] // 2
    kernel = convolve2d(m, np.outer(wy, wx)).astype(np.float32)
    img = hr.astype(np.float32) / 255
    lr = sample_grid(img, kernel, (y0 + ty - r, x0 + tx - r), scale)
    return jpeg(to_uint8(add_noise(lr, noise, rng)), quality)
