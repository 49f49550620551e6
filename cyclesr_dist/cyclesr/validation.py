"""What CycleSR reports about itself during training: sample grids, and validation on paired (real LR, HR)
images — the SR net against bicubic, and the translation net G against the true degradation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.images import clean_downscale, model_to_uint8, uint8_to_model
from ..metrics import translation_metrics
from ..serve.evaluate import bicubic_upscale, evaluate_pairs, match_hr
from ..torch_utils import eval_mode

ValPair = tuple[str, np.ndarray, np.ndarray]  # (name, lr_uint8, hr_uint8)


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top : top + size, left : left + size]


@torch.no_grad()
def comparison(sr: nn.Module, val_pairs: list[ValPair], scale: int, crop: int = 128, rows: int = 3) -> np.ndarray:
    """One row per validation pair (up to `rows`): centre crops of LR (pixels enlarged) | bicubic | SR | HR."""
    lines = []
    for name, lr_img, hr_img in val_pairs[:rows]:
        hr_img = match_hr(lr_img, hr_img, scale, name)
        size = min(crop, hr_img.shape[0], hr_img.shape[1]) // scale * scale
        lr_crop = _centre_crop(lr_img, size // scale)
        with eval_mode(sr):
            out = sr(uint8_to_model(lr_crop).unsqueeze(0).to(_device(sr)))
        big = np.repeat(np.repeat(lr_crop, scale, axis=0), scale, axis=1)
        tiles = [big, bicubic_upscale(lr_crop, scale), model_to_uint8(out[0]), _centre_crop(hr_img, size)]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines], axis=0)


@torch.no_grad()
def sample_grids(
    gen_clean_to_real: nn.Module, sr: nn.Module, batch: dict[str, torch.Tensor], val_pairs: list[ValPair], scale: int
) -> dict[str, np.ndarray]:
    """clean LR | G(clean LR) | real LR from the batch; LR | bicubic | SR | HR crops of the validation pairs."""
    row = [batch["clean_lr"][:1], gen_clean_to_real(batch["clean_lr"][:1]), batch["real_lr"][:1]]
    grids = {"samples/translation": np.concatenate([model_to_uint8(t[0]) for t in row], axis=1)}
    if val_pairs:
        grids["samples/comparison"] = comparison(sr, val_pairs, scale)
    return grids


def validate_sr(sr: nn.Module, pairs: list[ValPair], scale: int, max_shift: int) -> dict[str, float]:
    """PSNR/SSIM of SR and of bicubic on the paired validation images: the same code as `cyclesr eval`."""
    mean = evaluate_pairs(sr, pairs, scale=scale, max_shift=max_shift)["mean"]
    return {f"val/{k}": v for k, v in mean.items()}


@torch.no_grad()
def validate_translation(
    gen_clean_to_real: nn.Module, pairs: list[ValPair], scale: int, clean_lr: str = "bicubic"
) -> dict[str, float]:
    """How close G(clean LR of the HR) comes to the true LR of the same photo (`metrics.translation_metrics`),
    next to the clean LR itself: G has learned the degradation when its numbers beat the clean LR's. The clean LR
    is made as in training (`clean_lr`: the run's `data.hr_to_lr`); images are cropped to what G's strides accept."""
    multiple = getattr(gen_clean_to_real, "multiple", 1)
    device = _device(gen_clean_to_real)
    generated, clean, real = [], [], []
    for name, lr_img, hr_img in pairs:
        hr_img = match_hr(lr_img, hr_img, scale, name)
        h, w = (lr_img.shape[0] // multiple) * multiple, (lr_img.shape[1] // multiple) * multiple
        if min(h, w) < 8:
            continue
        hr = uint8_to_model(hr_img[: h * scale, : w * scale]).unsqueeze(0).to(device)
        x = clean_downscale(hr, scale, clean_lr)
        with eval_mode(gen_clean_to_real):
            # Quantised as a saved image would be, like the true LR it is compared with.
            generated.append(uint8_to_model(model_to_uint8(gen_clean_to_real(x)[0])))
        clean.append(uint8_to_model(model_to_uint8(x[0])))
        real.append(uint8_to_model(lr_img[:h, :w]))
    if not real:
        return {}
    out: dict[str, float] = {}
    for prefix, images in (("val/translation_", generated), ("val/clean_lr_", clean)):
        sums: dict[str, float] = {}
        for image, target in zip(images, real, strict=True):
            for key, value in translation_metrics(image[None], target[None]).items():
                sums[key] = sums.get(key, 0.0) + value / len(real)
        out |= {prefix + key: value for key, value in sums.items()}
    return out
