"""How much blurrier the real LR is than the bicubic LR of the HR photos, measured without pairs.

Why: the translation generator does not learn a blur from the adversarial loss (a learned kernel moved ±0.02 per tap
in thousands of steps; docs/history/quality-*.md), yet a fixed Gaussian given to G (`input_blur`) at the σ measured
here lifted the blur operator by +0.38 dB and the benchmark's mean over four operators by +0.11 dB. So, as with the
JPEG quality, the blur is measured on the user's photos instead of learned.

How: on luma, the strongest edges (the top 2 % of gradient maxima after non-maximum suppression along the
gradient) are judged by their width, contrast across ±3 px over the gradient magnitude at the edge (a blurred step
is wider by its blur's σ·√(2π)). σ is then found by bisection as the Gaussian which, applied to the bicubic LR of
the HR photos exactly as G applies `input_blur`, gives their strongest edges the real LR's median width: G's
blurred input then matches the real LR in this statistic. Solving for it, rather than adding widths in quadrature,
matters: the measure has a floor of its own (its 3×3 gradient), so the quadrature rule reads 0.6 and 0.9 LR px
of blur added to the same photos as 0.51 and 0.81 (solved: 0.61, 0.89), and the quality benchmark's unpaired sets
as 0.27–0.40 against 0.43–0.50 solved (0.42–0.50 solved on each operator's own test scenes, clean against
degraded). Limits: the two sets are different scenes, and scene sets alone differ by about 10 % in median width;
below about 0.35 LR px the widths barely move (see MIN_WIDENING).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ..data.images import clean_downscale, model_to_uint8, uint8_to_model
from ..models.cyclegan import GaussianBlur

REACH = 3  # px each side of an edge over which its contrast is taken
STRONGEST = 0.02  # fraction of gradient maxima judged: the clear edges, where noise barely moves the gradient
MAX_SIGMA = 2.0  # LR px searched; a real LR blurrier than that is a different scale factor, not a blur
TOLERANCE = 0.01  # LR px the bisection stops at
# Real edges less than 1 % wider than the clean LR's are no blur: one edge more or less among the strongest moves
# the median that much, and the measure cannot see a blur below about 0.35 LR px (its own 3×3 gradient)
MIN_WIDENING = 1.01
_LUMA = np.array([0.299, 0.587, 0.114])
# the 4 directions non-maximum suppression compares along: right, down-right, down, down-left
_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1))


def edge_widths(img: np.ndarray) -> np.ndarray:
    """Widths (px) of the strongest edges of an HxWx3 uint8 image; empty if it has none."""
    rgb = img.astype(np.float64)  # elementwise, not a matrix product: the same bits whatever the array's layout
    y = _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]
    gx, gy = ndimage.sobel(y, 1) / 8, ndimage.sobel(y, 0) / 8
    g = np.hypot(gx, gy)
    direction = (np.round(np.arctan2(gy, gx) / (np.pi / 4)) % 4).astype(int)
    maxima = np.zeros_like(g, dtype=bool)
    for k, step in enumerate(_STEPS):
        ahead, behind = np.roll(g, step, (0, 1)), np.roll(g, (-step[0], -step[1]), (0, 1))
        maxima |= (direction == k) & (g >= ahead) & (g >= behind)
    inside = np.zeros_like(maxima)
    inside[REACH + 1 : -REACH - 1, REACH + 1 : -REACH - 1] = True
    maxima &= inside & (g > 0)
    if not maxima.any():
        return np.zeros(0)
    ys, xs = np.nonzero(maxima & (g >= np.quantile(g[maxima], 1 - STRONGEST)))
    uy, ux = gy[ys, xs] / g[ys, xs], gx[ys, xs] / g[ys, xs]
    ahead = ndimage.map_coordinates(y, [ys + REACH * uy, xs + REACH * ux], order=1)
    behind = ndimage.map_coordinates(y, [ys - REACH * uy, xs - REACH * ux], order=1)
    return np.abs(ahead - behind) / g[ys, xs]


def median_width(images: list[np.ndarray]) -> float:
    """The median width of all the images' strongest edges together (0 if none has an edge)."""
    widths = [edge_widths(img) for img in images]
    pooled = np.concatenate(widths) if widths else np.zeros(0)
    return float(np.median(pooled)) if pooled.size else 0.0


def clean_lr(hr: np.ndarray, scale: int, kind: str = "bicubic") -> np.ndarray:
    """The clean LR (`images.CLEAN_LR` `kind`) of an HR uint8 image: what G is given."""
    return model_to_uint8(clean_downscale(uint8_to_model(hr), scale, kind))


def gaussian_blurred(images: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    """The images (HxWx3) blurred as G's `input_blur` blurs its input, in float (no rounding back to uint8)."""
    blur = GaussianBlur(sigma)
    with torch.no_grad():
        return [
            blur(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            for img in images
        ]


def estimate_input_blur(clean_lr_images: list[np.ndarray], real_lr_images: list[np.ndarray]) -> dict:
    """{"sigma", "clean_width", "real_width"}: σ in LR px, to 0.01, of the Gaussian that gives `clean_lr_images` (the
    bicubic LR of HR photos, `clean_lr`) the median edge width of `real_lr_images`; 0 when the real LR's edges are
    not 1 % wider, or when either set has no edge to measure."""
    # the blur's reflect padding needs images wider than its kernel; smaller ones have few edges to offer anyway
    clean = [img for img in clean_lr_images if min(img.shape[:2]) > 2 * math.ceil(3 * MAX_SIGMA)]
    clean_width, real_width = median_width(clean), median_width(real_lr_images)
    measurable = clean_width > 0 and real_width > MIN_WIDENING * clean_width
    low, high = 0.0, (MAX_SIGMA if measurable else 0.0)
    while high - low > TOLERANCE:  # the width grows with σ
        mid = (low + high) / 2
        low, high = (mid, high) if median_width(gaussian_blurred(clean, mid)) < real_width else (low, mid)
    return {"sigma": round((low + high) / 2, 2), "clean_width": clean_width, "real_width": real_width}
