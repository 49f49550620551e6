"""The one rule for training samples, shared by the folder and the streaming loaders: where a patch is cut, how
it is flipped or rotated, and how the LR input of an HR patch is made.

Transforms (`data.hr_augment`, `data.lr_augment`):
  dihedral  one of the 8 flips/90° rotations, uniformly
  flips     horizontal and vertical flips, each with probability 1/2 (what the reference does to HR crops)
  none      the patch as cut
Real-LR patches should not be rotated or flipped when the degradation has a direction: an anisotropic blur
kernel or an off-centre decimation grid becomes a mixture of its mirror images, which is not the real camera.

The LR of an HR patch (`data.hr_to_lr`): `bicubic` or `sampled` is the clean LR of CycleSR's X domain
(`images.CLEAN_LR`, computed in torch); any name of `degrade.DEGRADATIONS` degrades the patch *after* it was cut and
flipped (supervised training on synthetic pairs: the blind recipe, or an oracle that knows the operator), and
makes the target that degradation's `target(hr)` (e.g. the sharpened HR of the blind recipe).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import ConfigError
from .images import CLEAN_LR, clean_downscale, to_model_range, uint8_to_pixels

TRANSFORMS = ("dihedral", "flips", "none")


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    return img[top : top + size, left : left + size]


def random_transform(img: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "none":
        return img
    if kind == "flips":
        k = int(rng.integers(0, 4))
        img = img[:, ::-1] if k & 1 else img
        return img[::-1] if k & 2 else img
    if kind == "dihedral":
        k = int(rng.integers(0, 8))
        return np.rot90(img[:, ::-1] if k & 4 else img, k & 3)
    raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(TRANSFORMS)}")


def random_patch(img: np.ndarray, size: int, rng: np.random.Generator, transform: str) -> np.ndarray:
    """A random `size`² crop of an HxWx3 uint8 image, then a random transform: a view of `img`. The one copy is
    `images.uint8_to_pixels`'s, straight to CxHxW: copying a rotated view to HxWx3 first took four times as long
    (1.3 against 0.3 ms at 480² in a worker)."""
    return random_transform(random_crop(img, size, rng), rng, transform)


class HrToLr:
    """`data.hr_to_lr`: `self(hr_patch_uint8, rng) -> {"hr", "clean_lr"}`: pixels stay uint8 tensors (the HR, and an
    LR a degradation made) and a clean LR computed in torch is model-range float; the consumer maps both with
    `images.to_model_range` (the trainer does it on the device, after the smaller copy). An unknown name
    raises ValueError at construction, so a config error stops the job before any loader worker starts. A class
    rather than a closure so that spawned DataLoader workers can pickle it."""

    def __init__(self, name: str, scale: int) -> None:
        self.name, self.scale = name, scale
        if name not in CLEAN_LR:
            from .degrade import get_degradation

            try:
                self.degradation = get_degradation(name)
            except ValueError as exn:
                raise ConfigError(f"data.hr_to_lr={name!r}: {exn} (or a clean LR: {', '.join(CLEAN_LR)})") from None

    def __call__(self, hr_img: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if self.name in CLEAN_LR:
            hr = uint8_to_pixels(hr_img)
            return {"hr": hr, "clean_lr": clean_downscale(to_model_range(hr), self.scale, self.name)}
        hr_img = np.ascontiguousarray(hr_img)  # the operators work on whole HxWx3 arrays
        lr = self.degradation.degrade(hr_img, rng, self.scale)
        return {"hr": uint8_to_pixels(self.degradation.target(hr_img)), "clean_lr": uint8_to_pixels(lr)}
