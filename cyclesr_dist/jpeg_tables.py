"""JPEG's constants: the standard (IJG) luma and chroma quantisation tables at quality 50, which G's
differentiable JPEG stage (`models.jpeg`) and the quality estimate (`data.jpeg_estimate`) both scale, and the 8×8
DCT-II in float64 (the estimate's)."""

from __future__ import annotations

import numpy as np

LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4


def dct_matrix() -> np.ndarray:
    """The orthonormal 8×8 DCT-II matrix D (coefficients = D @ block @ D.T), JPEG's transform."""
    k, n = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    d = np.cos(np.pi * (2 * n + 1) * k / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return d
