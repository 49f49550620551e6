"""Paired evaluation of an SR network: PSNR/SSIM (RGB and Y), optional best-shift PSNR, and the bicubic baseline
on the same images. `evaluate_pairs` is shared by `cyclesr eval` and validation during training (it prints
nothing).

Protocol: SR output is quantized to uint8 (what a saved PNG holds) before measuring; HR is cropped (top-left) to
exactly scale x the LR size when it is up to scale − 1 pixels larger (`match_hr`; more only with `crop_hr`);
`shave` = scale border pixels are dropped; metrics are per image, then averaged over images. Bicubic = torch
antialias-free bicubic ×scale upsampling of the same LR, also quantized.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_text
from ..data.images import bicubic_resize, model_to_uint8, uint8_to_model
from ..errors import BadInput
from ..metrics import image_metrics
from .tiling import net_upscale, resolve_device, upscale_image

METRIC_KEYS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "psnr_rgb_best_shift")

Pair = tuple[str, np.ndarray, np.ndarray]


def bicubic_upscale(lr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: ×scale bicubic upsampling of an HxWx3 uint8 image, rounded back to uint8."""
    return model_to_uint8(bicubic_resize(uint8_to_model(lr_uint8), float(scale)))


def match_hr(
    lr_uint8: np.ndarray, hr_uint8: np.ndarray, scale: int, name: str = "", crop_hr: bool = False
) -> np.ndarray:
    """HR cropped (top-left) to exactly scale x the LR size. Fewer than `scale` extra HR pixels per side are what
    a ×1/scale downscale of an HR whose size is not a multiple of scale leaves, and are cropped silently; anything
    else means the pair does not match (another scale, another image) and is refused unless `crop_hr`."""
    for what, arr in (("LR", lr_uint8), ("HR", hr_uint8)):
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{name}: {what} must be an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    th, tw = lr_uint8.shape[0] * scale, lr_uint8.shape[1] * scale
    h, w = hr_uint8.shape[:2]
    sizes = f"HR is {w}x{h} but x{scale} of the {lr_uint8.shape[1]}x{lr_uint8.shape[0]} LR is {tw}x{th}"
    if h < th or w < tw:
        raise BadInput(f"{name}: {sizes}: the HR image is too small for this pair")
    if not crop_hr and (h - th >= scale or w - tw >= scale):
        raise BadInput(f"{name}: {sizes}: not a x{scale} pair (pass --crop-hr to score the top-left part anyway)")
    return hr_uint8[:th, :tw]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def evaluate_pairs(
    sr_net: nn.Module,
    pairs: Iterable[Pair],
    *,
    scale: int,
    max_shift: int = 0,
    subpixel: int = 1,
    device: str | torch.device | None = None,
    tile: int | None = None,
    overlap: int = 16,
    crop_hr: bool = False,
) -> dict[str, Any]:
    """Evaluate `sr_net` on (name, lr_uint8, hr_uint8) pairs (HxWx3 uint8; consumed one at a time).

    Returns {"count", "scale", "shave", "max_shift", "subpixel", "images": [per image], "mean": {...}} where each
    per-image entry and "mean" hold psnr_rgb, ssim_rgb, psnr_y, ssim_y (+ psnr_rgb_best_shift when max_shift > 0,
    over shifts on a 1/`subpixel` pixel grid: `metrics.best_shift`) for the SR output and the same keys prefixed
    "bicubic_" for the baseline; per-image entries also carry "name" and
    "hr_size" [H, W]. `device`: where the network is (None = its parameters' device; it is not moved); `tile`:
    see `inference.upscale_image` (None = untiled). The network's train/eval state is restored afterwards.
    """
    if net_upscale(sr_net) != scale:
        raise ValueError(f"scale={scale} but the network upscales x{net_upscale(sr_net)}")
    metric_device = resolve_device(sr_net, device)  # metrics (float64) run where the network is
    images: list[dict[str, Any]] = []
    for name, lr, hr in pairs:
        hr = match_hr(lr, hr, scale, name, crop_hr)
        sr = upscale_image(sr_net, lr, tile=tile, overlap=overlap, device=device)
        hr_t = uint8_to_model(hr).to(metric_device)
        entry: dict[str, Any] = {"name": str(name), "hr_size": [int(hr.shape[0]), int(hr.shape[1])]}
        sr_t = uint8_to_model(sr).to(metric_device)
        entry.update(image_metrics(sr_t, hr_t, shave=scale, max_shift=max_shift, subpixel=subpixel))
        bic_t = uint8_to_model(bicubic_upscale(lr, scale)).to(metric_device)
        bic = image_metrics(bic_t, hr_t, shave=scale, max_shift=max_shift, subpixel=subpixel)
        entry.update({f"bicubic_{k}": v for k, v in bic.items()})
        images.append(entry)
    if not images:
        raise ValueError("evaluate_pairs: no image pairs")
    keys = [k for k in images[0] if k not in ("name", "hr_size")]
    return {
        "count": len(images),
        "scale": scale,
        "shave": scale,
        "max_shift": max_shift,
        "subpixel": subpixel,
        "images": images,
        "mean": {k: _mean([img[k] for img in images]) for k in keys},
    }


def _fmt(value: float, key: str) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.4f}" if key.startswith("ssim") or "_ssim" in key else f"{value:.2f}"


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width text table: one row per image plus the mean; SR columns then bicubic columns."""
    keys = [k for k in METRIC_KEYS if k in result["mean"]]
    headers = {"psnr_rgb": "PSNR", "ssim_rgb": "SSIM", "psnr_y": "PSNR-Y", "ssim_y": "SSIM-Y"}
    headers["psnr_rgb_best_shift"] = f"PSNR±{result['max_shift']}px"
    cols = [("SR " + headers[k], k) for k in keys] + [("bic " + headers[k], f"bicubic_{k}") for k in keys]
    rows = [(img["name"], img) for img in result["images"]] + [(f"mean ({result['count']})", result["mean"])]
    name_w = max(5, *(len(r[0]) for r in rows))
    widths = [max(len(title), 8) for title, _ in cols]
    lines = [
        "  ".join([f"{'image':<{name_w}}"] + [f"{t:>{w}}" for (t, _), w in zip(cols, widths, strict=True)]),
    ]
    lines.append("-" * len(lines[0]))
    for i, (name, vals) in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("-" * len(lines[0]))
        cells = [f"{_fmt(vals[k], k):>{w}}" for (_, k), w in zip(cols, widths, strict=True)]
        lines.append("  ".join([f"{name:<{name_w}}"] + cells))
    lines.append(f"(x{result['scale']}, border shave {result['shave']} px, SR quantized to uint8; Y = BT.601)")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" / "nan": strict JSON has no such numbers
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(obj: Any, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(_json_safe(obj), indent=2) + "\n")
