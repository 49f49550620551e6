"""What CycleSR reports about itself during training: sample grids, and validation on paired (real LR, HR)
images — the SR net against bicubic, and the translation net G against the true degradation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.images import clean_downscale, model_to_uint8, uint8_to_model
from ..metrics import translation_metrics
from ..serve.evaluate import evaluate_pairs, match_hr
from ..torch_utils import eval_mode
from .pictures import ValPair, comparison, translation


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def sample_grids(
    gen_clean_to_real: nn.Module,
    sr: nn.Module,
    batch: dict[str, torch.Tensor],
    val_pairs: list[ValPair],
    scale: int,
    clean_lr: str = "bicubic",
) -> dict[str, np.ndarray]:
    """`pictures.translation` (clean LR | G(clean LR) | real LR) and, with validation pairs, `pictures.comparison`
    (LR | bicubic | SR | HR), labelled, at their most detailed crops."""
    grids = {"samples/translation": translation(gen_clean_to_real, batch, val_pairs, scale, clean_lr)}
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
