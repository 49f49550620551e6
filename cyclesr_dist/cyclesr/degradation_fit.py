"""Fit the real LR photos' degradation without pairs: an HR-resolution kernel with decimation, a signal-dependent
noise and the JPEG quality, learned against a local discriminator (a domain-level KernelGAN), plus noise patches
cut from flat regions of the real LR (RealSR's trick). What it produces is a file `data.degrade.fitted` turns into
an operator: the RealSR-style recipe trains the SR net on HR photos degraded by it.

How: HR crops go through the kernel and decimation, the noise and a JPEG at a quality drawn per image from the
range measured on the real LR (`data.jpeg_estimate`: a learned quality drifts, docs/history/quality-*.md); a
discriminator that sees 7×7 LR neighbourhoods without their local mean tells them from real-LR crops (LSGAN), and
the kernel and the noise levels follow its gradient. The HR crops are cut large enough that the kernel needs no
padding (a reflected border is a tell the discriminator finds). Priors: the kernel's centre of mass stays on
bicubic's grid (a global shift cannot be learned unpaired) and its mass stays near the middle (`spread`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.images import uint8_to_model
from ..data.jpeg_estimate import estimate_quality, quality_summary
from ..models.degradation import DownscaleKernel, LocalDiscriminator, SignalNoise, kernel_size
from ..models.jpeg import DifferentiableJPEG

NOISE_PATCH = 32  # LR px per side of a noise patch
FLATTEST = 0.05  # share of the real LR's patches, by luma variance, kept as noise patches
MIN_PATCHES = 32


@dataclass
class FitSettings:
    steps: int = 600
    batch: int = 16
    lr_crop: int = 32
    kernel_lr: float = 2e-3
    noise_lr: float = 2e-2
    disc_lr: float = 1e-3
    centre_weight: float = 0.5
    spread_weight: float = 5.0
    seed: int = 0


def noise_patches(real_lr: list[np.ndarray], size: int = NOISE_PATCH, max_std: float | None = None) -> np.ndarray:
    """The flattest size² patches of the real LR (lowest luma variance, a FLATTEST share, at least MIN_PATCHES),
    each minus its mean per channel: samples of the photos' own noise and compression, N×size×size×3 float32 on
    the [0, 1] scale. `max_std` (grey levels): drop patches whose luma std is larger, however few that leaves.
    Empty (0×size×size×3) when no image is that large."""
    found: list[tuple[float, np.ndarray]] = []
    for img in real_lr:
        pixels = img.astype(np.float32) / 255
        luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
        for r in range(0, img.shape[0] - size + 1, size // 2):
            for c in range(0, img.shape[1] - size + 1, size // 2):
                found.append((float(luma[r : r + size, c : c + size].var()), pixels[r : r + size, c : c + size]))
    found.sort(key=lambda item: item[0])
    flattest = found[: max(MIN_PATCHES, int(len(found) * FLATTEST))]
    if max_std is not None:
        flattest = [item for item in flattest if item[0] <= (max_std / 255) ** 2]
    kept = [p - p.mean(axis=(0, 1)) for _, p in flattest]
    return np.stack(kept) if kept else np.zeros((0, size, size, 3), np.float32)


def _crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        img = images[int(rng.integers(len(images)))]
        top, left = int(rng.integers(0, img.shape[0] - size + 1)), int(rng.integers(0, img.shape[1] - size + 1))
        out.append(uint8_to_model(np.ascontiguousarray(img[top : top + size, left : left + size])))
    return torch.stack(out)


def fit_degradation(
    hr: list[np.ndarray], real_lr: list[np.ndarray], scale: int = 4, settings: FitSettings | None = None, log=print
) -> dict:
    """{"kernel": K×K float32 (sums to 1), "noise": (a, b) on [0, 1], "jpeg": [low, high] or None, "noise_patches":
    N×P×P×3, "scale", "steps"}. `hr`, `real_lr`: HxWx3 uint8 photos, each at least (lr_crop·s + 4s)² and lr_crop²."""
    s = settings or FitSettings()
    hr_crop = s.lr_crop * scale + kernel_size(scale) - scale
    hr = [img for img in hr if min(img.shape[:2]) >= hr_crop]
    real_lr = [img for img in real_lr if min(img.shape[:2]) >= s.lr_crop]
    if not hr or not real_lr:
        raise ValueError(f"fit_degradation: needs HR photos of at least {hr_crop}² and real LR of {s.lr_crop}² px")
    summary = quality_summary({str(i): estimate_quality(img) for i, img in enumerate(real_lr)})
    jpeg_range = [summary["low"], summary["high"]] if summary else None
    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)
    kernel, noise, disc = DownscaleKernel(scale), SignalNoise(), LocalDiscriminator()
    jpeg = DifferentiableJPEG(jpeg_range) if jpeg_range else None
    opt_g = torch.optim.Adam(
        [{"params": kernel.parameters(), "lr": s.kernel_lr}, {"params": noise.parameters(), "lr": s.noise_lr}],
        betas=(0.5, 0.999),
    )
    opt_d = torch.optim.Adam(disc.parameters(), lr=s.disc_lr, betas=(0.5, 0.999))
    for step in range(s.steps):
        fake = noise(kernel(_crops(hr, s.batch, hr_crop, rng), pad=False))
        fake = jpeg(fake.clamp(-1, 1)) if jpeg is not None else fake
        real = _crops(real_lr, s.batch, s.lr_crop, rng)
        opt_d.zero_grad(set_to_none=True)
        loss_d = ((disc(real) - 1) ** 2).mean() + (disc(fake.detach()) ** 2).mean()
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        prior = s.centre_weight * (kernel.centre_offset() ** 2).sum() + s.spread_weight * kernel.spread()
        loss_g = ((disc(fake) - 1) ** 2).mean() + prior
        loss_g.backward()
        opt_g.step()
        if log is not None and (step + 1) % max(1, s.steps // 4) == 0:
            a, b = noise.levels()
            log(
                f"fit step {step + 1}/{s.steps}: D {loss_d.item():.3f}, G {loss_g.item():.3f}, kernel width "
                f"{kernel_width(kernel.kernel().detach().numpy()):.2f} HR px, noise {255 * math.sqrt(b):.2f} grey "
                f"levels + {a:.1e}·v"
            )
    return {
        "kernel": kernel.kernel().detach().numpy().astype(np.float32),
        "noise": noise.levels(),
        "jpeg": jpeg_range,
        "noise_patches": noise_patches(real_lr),
        "scale": scale,
        "steps": s.steps,
    }


def kernel_width(kernel: np.ndarray) -> float:
    """The kernel's σ along its widest direction (HR px): the square root of its second moment's largest
    eigenvalue, taps weighted by their absolute value."""
    k = np.abs(kernel) / np.abs(kernel).sum()
    t = np.arange(k.shape[0]) - (k.shape[0] - 1) / 2
    y, x = np.meshgrid(t, t, indexing="ij")
    my, mx = (k * y).sum(), (k * x).sum()
    cov = np.array([[(k * (y - my) ** 2).sum(), (k * (y - my) * (x - mx)).sum()], [0.0, (k * (x - mx) ** 2).sum()]])
    cov[1, 0] = cov[0, 1]
    return float(math.sqrt(max(np.linalg.eigvalsh(cov))))


def describe_fit(fit: dict) -> str:
    a, b = fit["noise"]
    jpeg = f"JPEG {fit['jpeg'][0]}–{fit['jpeg'][1]}" if fit["jpeg"] else "no JPEG"
    return (
        f"kernel width {kernel_width(fit['kernel']):.2f} HR px, noise {255 * math.sqrt(b):.2f} grey levels + "
        f"{a:.1e}·v, {len(fit['noise_patches'])} noise patches, {jpeg}"
    )


def save_fit(fit: dict, path: str | Path) -> Path:
    """The fit as one .npz (what `data.degrade.fitted` reads), written atomically."""
    from ..atomic import atomic_write

    arrays = {
        "kernel": fit["kernel"],
        "noise_levels": np.array(fit["noise"], np.float64),
        "jpeg_range": np.array(fit["jpeg"] or [0, 0], np.int64),
        "noise_patches": fit["noise_patches"].astype(np.float16),
        "scale": np.array(fit["scale"]),
    }
    return atomic_write(path, lambda f: np.savez(f, **arrays))
