"""The JPEG quality real LR photos were saved at, read back from their decoded pixels.

Why: the translation generator's JPEG stage (`model.generator.args.jpeg_quality`) learns its quality from the
adversarial loss, and on the quality benchmark that does not find the operators' qualities: from 90 it drifts to
83–84 on every operator, from 97 to 90–100, whatever the truth (docs/history/quality-*.md). Yet a decoded JPEG
still carries its quantisation: its luma DCT coefficients, on the file's 8×8 grid, sit near integer multiples of
the table the encoder used. So the quality can be measured instead of learned.

How: luma (JFIF) of the 8-bit image, 8×8 DCT-II at each of the 64 grid phases (a crop of a file can sit at any);
for each quality q in 10..100 the IJG luma table at q (the integer rule encoders use) and, over the low and
middle AC frequencies, the misfit 12 · mean((c / Q − round(c / Q))²) of the coefficients that quantise to a non-zero
level (1: no relation to Q; about 1 / Q² from the 8-bit rounding of the decoded pixels when Q is the table).
The estimate is the quality of least misfit (a finer table whose steps divide the true ones leaves the same
absolute residuals, a larger misfit relative to its smaller steps) at the phase where it is least (found on a
subsample of the blocks first). An image that
no table fits (never JPEG-compressed, resized or filtered after its JPEG, or above about quality 95, where the
steps are as small as the rounding noise) gives None.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..jpeg_tables import LUMA, dct_matrix
from .images import list_images, read_image

_LUMA_TABLE = np.array(LUMA, dtype=np.float64)
# low and middle AC frequencies: enough non-zero levels in any photo, and steps large against the noise of the
# decoded pixels' 8-bit rounding (about ±0.5 on a coefficient) at common qualities
_FREQUENCIES = tuple((u, v) for u in range(5) for v in range(5) if 1 <= u + v <= 4)
QUALITIES = np.arange(10, 101)
FITS = 0.75  # a misfit below this marks the table used (1 = no relation)
MIN_LEVELS = 200  # non-zero coefficients needed before a misfit means anything
REGION = 256  # side of the central region analysed (1024 blocks)
# The grid phase is found on every 4th block first (at the file's grid the best table fits far better than at any
# other phase, so a quarter of the blocks tells them apart), then the quality on all blocks at that phase alone.
PHASE_SUBSAMPLE = 4


def luma_table(quality: int) -> np.ndarray:
    """The IJG luma quantisation table at `quality`, with the integer rounding and clamping encoders apply."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_LUMA_TABLE * scale + 50) / 100), 1, 255)


# (qualities, frequencies): each quality's quantisation steps at the frequencies read, built once
_STEPS = np.array([[luma_table(int(q))[u, v] for u, v in _FREQUENCIES] for q in QUALITIES])


def _coefficients(luma: np.ndarray, top: int, left: int) -> np.ndarray:
    """(blocks, len(_FREQUENCIES)) DCT coefficients of the 8×8 blocks whose grid starts at (top, left)."""
    h, w = (luma.shape[0] - top) // 8 * 8, (luma.shape[1] - left) // 8 * 8
    blocks = luma[top : top + h, left : left + w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    d = dct_matrix()
    coefficients = d @ blocks.reshape(-1, 8, 8) @ d.T
    return np.stack([coefficients[:, u, v] for u, v in _FREQUENCIES], axis=1)


def _misfits(values: np.ndarray, steps: np.ndarray, min_levels: int) -> np.ndarray:
    """Misfit per quality row of `steps` (inf where too few non-zero levels to tell)."""
    ratio = values[None] / steps[:, None, :]  # (qualities, blocks, frequencies)
    levels = np.abs(ratio) >= 0.5
    squared = np.where(levels, (ratio - np.round(ratio)) ** 2, 0.0)
    count = levels.sum(axis=(1, 2))
    return np.where(count >= min_levels, 12 * squared.sum(axis=(1, 2)) / np.maximum(count, 1), np.inf)


def estimate_quality(img: np.ndarray) -> int | None:
    """The JPEG quality (10..100) an 8-bit RGB image was last saved at, or None if no table fits."""
    h, w = min(img.shape[0], REGION), min(img.shape[1], REGION)  # a central region: enough blocks, bounded time
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    luma = img[top : top + h, left : left + w].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) - 128.0
    phase = min(
        ((y, x) for y in range(8) for x in range(8)),
        key=lambda at: float(_misfits(_coefficients(luma, *at)[::PHASE_SUBSAMPLE], _STEPS, MIN_LEVELS // 4).min()),
    )
    misfit = _misfits(_coefficients(luma, *phase), _STEPS, MIN_LEVELS)
    i = int(np.argmin(misfit))  # the first of equal tables: the coarsest quality that has them
    return int(QUALITIES[i]) if misfit[i] < FITS else None


def estimate_folder(root: str | Path) -> dict[str, int | None]:
    """{path under `root`: estimated quality or None} for every image under `root` (an unreadable one is a
    one-line user error naming it)."""
    return {str(path.relative_to(root)): estimate_quality(read_image(path)) for path in list_images(root)}


def quality_summary(estimates: dict[str, int | None]) -> dict[str, int] | None:
    """The range a generator's JPEG stage should draw from (5th to 95th percentile of the images' qualities,
    robust to a stray estimate) and the median; None when no image has a JPEG quality."""
    found = np.array([q for q in estimates.values() if q is not None])
    if not len(found):
        return None
    low, median, high = (int(round(float(np.percentile(found, p)))) for p in (5, 50, 95))
    return {"low": low, "median": median, "high": high, "images": len(found)}
