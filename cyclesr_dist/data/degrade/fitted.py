"""An operator made from a fitted degradation file (`cyclesr data fit-degradation`, `cyclesr.degradation_fit`):
the RealSR-style recipe's synthetic pairs. HR → the fitted kernel and ×1/s decimation on bicubic's grid → plus
one of the noise patches cut from flat regions of the real LR (random patch, flip and offset per call; tiled
when the LR is larger) → a JPEG at a quality drawn from the measured range (none if the real LR showed none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import check_input, jpeg, sample_grid, to_uint8


class FittedDegradation:
    """`self(hr, rng, scale)` as every operator; numpy only, picklable for loader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            with np.load(self.path) as f:
                self.kernel = f["kernel"].astype(np.float32)
                self.patches = f["noise_patches"].astype(np.float32)
                low, high = (int(v) for v in f["jpeg_range"])
                self.scale = int(f["scale"])
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a fitted degradation file (cyclesr data fit-degradation): {err}") from None
        self.jpeg_range = (low, high) if high > 0 else None

    def __call__(self, hr: np.ndarray, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
        check_input(hr, scale, "fitted")
        if scale != self.scale:
            raise ValueError(f"{self.path} was fitted for ×{self.scale}, not ×{scale}")
        pad = (self.kernel.shape[0] - scale) // 2
        lr = sample_grid(hr.astype(np.float32) / 255, self.kernel, (-pad, -pad), scale)
        if len(self.patches):
            lr = lr + self._noise(lr.shape[:2], rng)
        out = to_uint8(lr)
        return jpeg(out, int(rng.integers(self.jpeg_range[0], self.jpeg_range[1] + 1))) if self.jpeg_range else out

    def _noise(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        patch = self.patches[int(rng.integers(len(self.patches)))]
        patch = patch[::-1] if rng.random() < 0.5 else patch
        patch = patch[:, ::-1] if rng.random() < 0.5 else patch
        size = patch.shape[0]
        reps = (-(-(shape[0] + size) // size), -(-(shape[1] + size) // size), 1)
        tiled = np.tile(patch, reps)
        top, left = int(rng.integers(size)), int(rng.integers(size))
        return tiled[top : top + shape[0], left : left + shape[1]]
