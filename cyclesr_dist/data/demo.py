"""`cyclesr demo-data OUT`: a small unpaired set built offline from photos scikit-image ships.

Three disjoint groups of photos:
- HR domain (`OUT/hr`): clean photos, used as HR crops (the clean LR is made from them on the fly);
- real-LR domain (`OUT/real_lr`): *other* photos degraded by `degrade.degrade_real` (blur, ×4 down, noise, JPEG);
- paired validation (`OUT/val/hr`, `OUT/val/lr`): held-out photos and their degraded ×4 versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .degrade import degrade_real
from .images import load_rgb, save_rgb

HR_PHOTOS = ["astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "brick.png", "grass.png"]
REAL_LR_PHOTOS = ["chelsea.png", "hubble_deep_field.jpg", "ihc.png", "camera.png", "gravel.png", "page.png"]
VAL_PHOTOS = ["motorcycle_right.png", "retina.jpg", "moon.png"]


def skimage_photo_dir() -> Path:
    import skimage.data

    return Path(os.path.dirname(skimage.data.__file__))


def _center_crop(arr: np.ndarray, multiple: int, max_side: int) -> np.ndarray:
    h = min(arr.shape[0], max_side) // multiple * multiple
    w = min(arr.shape[1], max_side) // multiple * multiple
    top, left = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
    return arr[top : top + h, left : left + w]


def build_demo_data(out_dir: str | Path, scale: int = 4, seed: int = 0, val_side: int = 192) -> dict:
    """Write the demo set; returns (and writes as manifest.json) what was produced."""
    out = Path(out_dir)
    src = skimage_photo_dir()
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "scale": scale,
        "degradation": "cyclesr_dist.data.degrade.degrade_real",
        "hr": [],
        "real_lr": [],
        "val": [],
    }
    for name in HR_PHOTOS:
        hr = _center_crop(load_rgb(src / name), scale, max_side=768)
        save_rgb(hr, out / "hr" / f"{Path(name).stem}.png")
        manifest["hr"].append(name)
    for name in REAL_LR_PHOTOS:
        photo = _center_crop(load_rgb(src / name), scale, max_side=768)
        save_rgb(degrade_real(photo, rng, scale), out / "real_lr" / f"{Path(name).stem}.png")
        manifest["real_lr"].append(name)
    for name in VAL_PHOTOS:
        # Small validation images keep validation cheap on a CPU.
        hr = _center_crop(load_rgb(src / name), scale, max_side=val_side)
        save_rgb(hr, out / "val" / "hr" / f"{Path(name).stem}.png")
        save_rgb(degrade_real(hr, rng, scale), out / "val" / "lr" / f"{Path(name).stem}.png")
        manifest["val"].append(name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
