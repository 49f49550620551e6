"""Pieces every operator shares: JPEG round trip, the sampling phase and grid, kernels, noise, parameter draws."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image


def anisotropic_gaussian_kernel(sigma_major: float, sigma_minor: float, angle: float, size: int = 21) -> np.ndarray:
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xs + s * ys, -s * xs + c * ys
    kernel = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
    return kernel / kernel.sum()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 HxWx3 -> its JPEG round trip (PIL, 4:2:0), uint8."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8).copy()


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any excess clipped) -> uint8, rounded."""
    return np.ascontiguousarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


def pick(fixed: dict, name: str, drawn: Any) -> Any:
    return fixed.pop(name) if name in fixed else drawn


def no_more(fixed: dict, op: str, valid: tuple[str, ...]) -> None:
    if fixed:
        raise TypeError(f"{op}: unknown fixed parameter(s) {sorted(fixed)}; valid: {', '.join(valid)}")


def check_input(hr: np.ndarray, scale: int, op: str) -> None:
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"{op}: expected an HxWx3 uint8 image, got {hr.dtype} {hr.shape}")
    if scale < 1 or hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"{op}: H and W ({hr.shape[0]}x{hr.shape[1]}) must be multiples of scale {scale}")


def draw_phase(rng: np.random.Generator, scale: int) -> tuple[float, float]:
    y, x = rng.uniform(-scale / 2, scale / 2, size=2)
    return float(y), float(x)


def split_phase(phase: float, scale: int) -> tuple[int, float]:
    """Sample position of LR pixel 0, (s−1)/2 + phase, as an integer start and a fraction in [0, 1)."""
    c = (scale - 1) / 2 + phase
    start = math.floor(c)
    return start, c - start


def sample_grid(
    img: np.ndarray, kernel: np.ndarray, origin: tuple[int, int], scale: int, border: str = "reflect"
) -> np.ndarray:
    """out[i, j] = Σ_ab kernel[a, b]·img[s·i + origin_y + a, s·j + origin_x + b], indices past the border
    mirrored (numpy's `border` pad mode); (H/s)x(W/s)(x C). Only the kept samples are computed: one strided
    slice per kernel tap, instead of filtering every HR pixel and dropping (s² − 1)/s² of them."""
    h, w = img.shape[:2]
    oh, ow = h // scale, w // scale
    kh, kw = kernel.shape
    pad = max(kh, kw) + 2 * scale + abs(origin[0]) + abs(origin[1])
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (img.ndim - 2)
    padded = np.pad(img, widths, mode=border)
    out = np.zeros((oh, ow) + img.shape[2:], dtype=img.dtype)
    for a, b in zip(*np.nonzero(kernel), strict=True):
        y0, x0 = pad + origin[0] + a, pad + origin[1] + b
        out += kernel[a, b] * padded[y0 : y0 + scale * oh : scale, x0 : x0 + scale * ow : scale]
    return out


def gaussian_2d(sigma: tuple[float, float], angle: float, shift: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Gaussian (σ1 along `angle`, σ2 across) centred at (shift_y, shift_x) ∈ [0, 1)², on taps −r..r+1 per axis;
    returns (kernel, −r): tap a of the kernel is offset a − r from the integer sample position."""
    r = math.ceil(3.5 * max(sigma))
    t = np.arange(-r, r + 2, dtype=np.float64)
    ys, xs = t[:, None] - shift[0], t[None, :] - shift[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * xs + s * ys, -s * xs + c * ys
    k = np.exp(-0.5 * ((u / sigma[0]) ** 2 + (v / sigma[1]) ** 2))
    return k / k.sum(), -r


def box_taps(scale: int, frac: float) -> tuple[np.ndarray, int]:
    """1D area-averaging weights of an s-wide box centred at `frac` (pixel cells [t − ½, t + ½]); (weights, t0)."""
    t = np.arange(-scale, scale + 2)
    lo, hi = frac - scale / 2, frac + scale / 2
    w = np.clip(np.minimum(t + 0.5, hi) - np.maximum(t - 0.5, lo), 0, None) / scale
    keep = np.nonzero(w)[0]
    return w[keep[0] : keep[-1] + 1], int(t[keep[0]])


def add_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
