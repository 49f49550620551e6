"""The documented synthetic "real" degradation used for the demo data and the quality benchmark.

    real_lr = JPEG_q( decimate_×s( anisotropic_gaussian_blur(hr) ) + gaussian_noise )

per image: blur σ_major ~ U(1.6, 2.4) and σ_minor ~ U(0.6, 1.0) HR pixels at a random angle (21×21 kernel),
decimation keeps every s-th pixel (no anti-aliasing beyond the blur), noise σ ~ U(2, 6) / 255, JPEG quality
~ U(70, 90). A model never sees a (degraded, clean) pair of this kind unless it is the paired oracle.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import convolve


def anisotropic_gaussian_kernel(sigma_major: float, sigma_minor: float, angle: float, size: int = 21) -> np.ndarray:
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xs + s * ys, -s * xs + c * ys
    kernel = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
    return kernel / kernel.sum()


def degrade_real(hr: np.ndarray, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """HxWx3 uint8 -> (H//scale)x(W//scale)x3 uint8 with the unknown-to-the-model degradation above."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    img = hr[:h, :w].astype(np.float64)
    kernel = anisotropic_gaussian_kernel(rng.uniform(1.6, 2.4), rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
    blurred = np.stack([convolve(img[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
    offset = scale // 2  # sample the centre of each scale×scale cell
    lr = blurred[offset::scale, offset::scale]
    lr = lr + rng.normal(0.0, rng.uniform(2.0, 6.0), size=lr.shape)
    lr = np.clip(lr + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(lr).save(buf, format="JPEG", quality=int(rng.integers(70, 91)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8).copy()
