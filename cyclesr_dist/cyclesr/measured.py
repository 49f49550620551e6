"""Recipe settings measured on the user's photos before training starts: `jpeg_quality: auto`, `input_blur: auto`,
and the noise samples `real_noise` cuts from the real LR.

G's JPEG stage learns its quality badly (from 90 it drifts to 83–84 whatever the truth), while the quality the real
LR photos were saved at can be read from their pixels; drawing G's quality per image from that measured range gave
+0.14 dB on the blur operator and +0.18 dB on the demo (docs/history/quality-*.md). Nor does G learn a blur; a fixed
Gaussian at the σ that gives the bicubic LR the real LR's edge width gave +0.38 dB on the blur operator and +0.11 dB
in the suite's mean. `auto` makes the trainer do these measurements itself, so a config need not carry numbers that
belong to one user's photos.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import torch

from ..config import Config
from ..data.images import clean_lr_kind
from ..data.jpeg_estimate import estimate_quality, quality_summary
from ..data.loaders import unpaired_images
from ..errors import BadInput
from .blur_estimate import clean_lr, estimate_input_blur
from .degradation_fit import MIN_PATCHES, NOISE_PATCH, noise_patches
from .networks import build_networks

AUTO = "auto"
# the generator arguments `auto` may stand for, and what a user may set instead
MEASURED = {"jpeg_quality": "a quality or [low, high]", "input_blur": "a Gaussian σ in LR px (0 = off)"}
# Images (or shard crops) read per domain: enough for a stable percentile or median, a few seconds per process
MEASURED_IMAGES = 48


def _images(
    config: Config, domain: str, setting: str, convert: Callable[[np.ndarray], np.ndarray] | None = None
) -> list[tuple[str, np.ndarray]]:
    images = unpaired_images(config.data, domain, MEASURED_IMAGES, convert)
    if not images:
        d = config.data
        key, label = ("hr_shards", "HR") if domain == "hr" else ("lr_shards", "real-LR")
        where = f"{d.root}/{domain}" if d.kind == "folder" else f"data.{key}={getattr(d, key)}"
        raise BadInput(
            f"{setting}: {'auto ' * (setting in MEASURED)}found no readable {label} image in {where} to measure: add "
            "the photos, or set "
            f"model.generator.args.{setting} to {MEASURED.get(setting, 'false')}"  # real_noise: false
        )
    return images


def _jpeg_quality(real_lr: list[tuple[str, np.ndarray]]) -> tuple[list[int] | int, str]:
    summary = quality_summary({name: estimate_quality(img) for name, img in real_lr})
    if summary is None:
        return 0, f"none of {len(real_lr)} real-LR images shows a JPEG quantisation: G's JPEG stage off"
    low, high = summary["low"], summary["high"]
    return [low, high], (
        f"G's JPEG quality drawn from {low}–{high}, measured on {summary['images']} of {len(real_lr)} real-LR images "
        f"(median {summary['median']})"
    )


def _input_blur(config: Config, real_lr: list[tuple[str, np.ndarray]]) -> tuple[float, str]:
    scale = config.data.scale
    kind = clean_lr_kind(config.data.hr_to_lr)
    clean = _images(config, "hr", "input_blur", lambda hr: clean_lr(hr, scale, kind))  # each photo as G is given it
    found = estimate_input_blur([img for _, img in clean], [img for _, img in real_lr])
    sigma = found["sigma"]
    widths = (
        f"median edge width {found['real_width']:.2f} px on {len(real_lr)} real-LR images against "
        f"{found['clean_width']:.2f} on the {kind} LR of {len(clean)} HR images"
    )
    if sigma == 0:
        return 0.0, f"{widths}: no blur to add, G's input blur off"
    return sigma, f"G blurs its input by a Gaussian of σ {sigma:.2f} LR px ({widths})"


def _check_networks(config: Config, wanted: list[str]) -> None:
    """Build the networks once with each `auto` off, so that a wrong network name or argument is reported before
    the measurements read the photos (seconds to minutes), not after them."""
    generator = dataclasses.replace(
        config.model.generator, args={**config.model.generator.args, **dict.fromkeys(wanted, 0)}
    )
    build_networks(dataclasses.replace(config.model, generator=generator))


def with_measured_recipe(config: Config) -> Config:
    """Each of G's `jpeg_quality` and `input_blur` that says `auto` replaced by its value measured on the data:
    the JPEG range of the real LR ([low, high], or 0 when no image shows a JPEG quantisation) and the Gaussian σ
    by which the real LR is blurrier than the HR photos' bicubic LR (0 when it is not). Every process measures
    the same images, so every rank builds the same G; other values are returned as they are."""
    args = config.model.generator.args
    wanted = [name for name in MEASURED if args.get(name) == AUTO]
    if not wanted:
        return config
    _check_networks(config, wanted)
    real_lr = _images(config, "real_lr", wanted[0])
    measured, lines = {}, []
    if "jpeg_quality" in wanted:
        measured["jpeg_quality"], line = _jpeg_quality(real_lr)
        lines.append(f"jpeg_quality auto: {line}")
    if "input_blur" in wanted:
        measured["input_blur"], line = _input_blur(config, real_lr)
        lines.append(f"input_blur auto: {line}")
    if int(os.environ.get("RANK", "0")) == 0:
        for line in lines:
            print(f"[cyclesr] {line}", flush=True)
    generator = dataclasses.replace(config.model.generator, args={**args, **measured})
    return dataclasses.replace(config, model=dataclasses.replace(config.model, generator=generator))


# noise samples G carries (`real_noise`): enough variety for a batch, a few MB in every checkpoint
NOISE_BANK = 256
# A noise patch's largest luma std (grey levels): above it a "flattest" patch is texture, not noise. The suite's six
# operators' flattest patches (noise of σ 2-6 before their JPEG included) measure under 2.6 in 90 % of cases, so
# the bound leaves room for three times their noise; the demo's six small real-LR photos have no flat region, their
# 32 "flattest" patches measure 6.4-15, and G adding that texture everywhere cost the demo 0.9 dB.
NOISE_MAX_STD = 8.0


def real_noise_bank(config: Config) -> torch.Tensor:
    """`real_noise`'s samples: the flattest 32² patches of the real LR (`degradation_fit.noise_patches`, the
    RealSR-style row's) that are flat in absolute terms (luma std ≤ NOISE_MAX_STD), NOISE_BANK of them spread over
    the flatness order (the very flattest are often clipped sky with no noise left), N×3×32×32 on the model's
    [-1, 1] scale. Empty (G adds nothing) when fewer than MIN_PATCHES are flat. The same images on every rank: the
    same bank."""
    real_lr = _images(config, "real_lr", "real_noise")
    patches = noise_patches([img for _, img in real_lr], max_std=NOISE_MAX_STD)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if len(patches) < MIN_PATCHES:  # a few fields repeated are what a discriminator learns, not noise
        if rank0:
            print(
                f"[cyclesr] real_noise: off — only {len(patches)} {NOISE_PATCH}² patches of the real LR are flat "
                f"(luma std ≤ {NOISE_MAX_STD:g} grey levels; {MIN_PATCHES} needed): where the photos are flattest "
                "they show texture (or they are smaller than a patch), not noise; G's own noise stands in",
                flush=True,
            )
        return torch.zeros(0, 3, NOISE_PATCH, NOISE_PATCH)
    keep = np.unique(np.linspace(0, len(patches) - 1, min(NOISE_BANK, len(patches))).round().astype(int))
    bank = torch.from_numpy(np.ascontiguousarray(patches[keep].transpose(0, 3, 1, 2))) * 2  # [0, 1] -> [-1, 1] scale
    if rank0:
        print(
            f"[cyclesr] real_noise: {len(bank)} noise patches from the flattest regions of {len(real_lr)} real-LR "
            f"images (std {float(bank.std()) * 127.5:.2f} grey levels)",
            flush=True,
        )
    return bank
