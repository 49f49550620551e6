"""Validation signals that need no (real LR, HR) pairs: how a set of generated LR images G(clean LR) matches a set
of real-LR photos of *other* scenes, in the statistics that tell degradations apart, and how well the SR net
inverts G on synthetic pairs.

A user without pairs can still hold out some HR photos and some real-LR photos. The pixels of the two sets do not
correspond, so every comparison here is between set-level statistics (pooled over the images of each set), never
pixel by pixel. Images are CHW (or NCHW) tensors in [-1, 1]; sets are sequences of them and may mix sizes. All
statistics are computed on 8-bit-scale grey (mean of R, G, B, 0–255) in float64, except the colour ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cyclesr_dist.metrics import _radial_log_power, psnr

Images = Sequence[torch.Tensor]

# Frequency bands in cycles/px. Fixed in cycles/px (not in rings) so sets of different image sizes compare; the
# lowest band is the reference the others are measured against (see `spectral_band_distance`).
BANDS: tuple[tuple[float, float], ...] = ((0.02, 0.0625), (0.0625, 0.125), (0.125, 0.25), (0.25, 0.375), (0.375, 0.5))
BLOCK = 8  # JPEG's block size


def _chw_list(images: Images | torch.Tensor) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        return [images]
    out = [t[0] if t.dim() == 4 else t for t in images]
    if not out:
        raise ValueError("unpaired metrics: an empty image set")
    return out


def _unit(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64).clamp(-1, 1).add(1).mul(0.5)


def _gray255(t: torch.Tensor) -> torch.Tensor:
    return _unit(t).mean(dim=0) * 255


def band_log_power(images: Images | torch.Tensor, bands: Sequence[tuple[float, float]] = BANDS) -> torch.Tensor:
    """Mean power (dB) of the set's grey images in each frequency band: each image's radially averaged spectrum
    (`metrics._radial_log_power`: mean removed, Hann window), its rings averaged per band in linear power, then
    the images averaged in linear power (pooled like one large sample, so one busy image does not dominate in dB)."""
    per_image = []
    for img in _chw_list(images):
        freqs, log_power = _radial_log_power(_gray255(img)[None])
        power = 10 ** (log_power / 10)
        rows = []
        for lo, hi in bands:
            ring = (freqs >= lo) & (freqs < hi) if hi < 0.5 else (freqs >= lo)
            if not bool(ring.any()):
                raise ValueError(f"band_log_power: image of {tuple(img.shape[-2:])} has no ring in [{lo}, {hi})")
            rows.append(power[ring].mean())
        per_image.append(torch.stack(rows))
    return 10 * torch.log10(torch.stack(per_image).mean(0))


def spectral_band_distance(generated: Images | torch.Tensor, real: Images | torch.Tensor) -> float:
    """Mean |Δ dB| over the bands above the lowest, after subtracting the lowest band's Δ. The sets show different
    scenes, whose overall contrast differs; a degradation (blur, noise, JPEG, resampling) changes the spectrum's
    shape, mostly above 1/16 cycles/px, so the shape relative to the coarsest band is what has to match."""
    delta = band_log_power(generated) - band_log_power(real)
    return float((delta[1:] - delta[0]).abs().mean())


def _box3(gray: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(gray[None, None], (1, 1, 1, 1), mode="reflect"), 3, 1)[0, 0]


def _tiles(x: torch.Tensor, patch: int) -> torch.Tensor:
    """H×W -> (tiles, patch²): the whole `patch`² tiles from the origin (a ragged edge dropped)."""
    h, w = x.shape[0] // patch, x.shape[1] // patch
    return x[: h * patch, : w * patch].reshape(h, patch, w, patch).permute(0, 2, 1, 3).reshape(-1, patch * patch)


def noise_floor(images: Images | torch.Tensor, patch: int = 16, fraction: float = 0.1) -> float:
    """Noise std (0–255 grey) of the set, read where the scene has no structure: each image is cut into
    `patch`² tiles, the `fraction` flattest by the std of their 3×3-box-smoothed content are kept, and the median
    over the kept tiles (all images pooled) of the std of the high-pass residual x − box3×3(x) is returned, divided
    by √(8/9) so that white Gaussian noise of std σ reads σ. Texture leaks into the residual everywhere else; the
    flattest tiles are where sensor noise (or its absence after a denoiser or JPEG) shows."""
    picked = []
    for img in _chw_list(images):
        gray = _gray255(img)
        smooth = _box3(gray)
        residual = (gray - smooth) / math.sqrt(8 / 9)
        if min(gray.shape) < patch:
            raise ValueError(f"noise_floor: image of {tuple(gray.shape)} is smaller than a {patch}² tile")
        flatness = _tiles(smooth, patch).std(dim=1)
        keep = flatness.argsort()[: max(1, int(fraction * flatness.numel()))]
        picked.append(_tiles(residual, patch)[keep].std(dim=1))
    return float(torch.cat(picked).median())


def noise_floor_log_ratio(generated: Images | torch.Tensor, real: Images | torch.Tensor) -> float:
    """|log(noise floor of generated / of real)|: 0 when G adds as much noise as the camera did, symmetric in
    too much and too little. The floor is bounded below by 8-bit quantisation (≈0.3), so a clean set stays finite."""
    return abs(math.log(max(noise_floor(generated), 1e-3) / max(noise_floor(real), 1e-3)))


def blockiness(images: Images | torch.Tensor, block: int = BLOCK) -> float:
    """Mean |step| across the `block`-grid's boundaries over the mean |step| between the other neighbours, minus
    1, horizontal and vertical steps pooled over the set: 0 without blocking, > 0 for JPEG. The grid is taken at
    the image origin, where the encoder of an image saved at this size put it (a crop would need a phase search)."""
    on = off = 0.0
    n_on = n_off = 0
    for img in _chw_list(images):
        gray = _gray255(img)
        for steps in ((gray[:, 1:] - gray[:, :-1]).abs(), (gray[1:] - gray[:-1]).abs().T):
            boundary = (torch.arange(steps.shape[1]) + 1) % block == 0  # step between pixel j and j + 1
            on += float(steps[:, boundary].sum())
            off += float(steps[:, ~boundary].sum())
            n_on += int(boundary.sum()) * steps.shape[0]
            n_off += int((~boundary).sum()) * steps.shape[0]
    if n_on == 0 or off == 0:
        return 0.0
    return (on / n_on) / (off / n_off) - 1.0


def blockiness_difference(generated: Images | torch.Tensor, real: Images | torch.Tensor) -> float:
    """|blockiness(generated) − blockiness(real)|."""
    return abs(blockiness(generated) - blockiness(real))


def colour_stats(images: Images | torch.Tensor) -> torch.Tensor:
    """(mean, std) of HSV saturation (max − min) / max over every pixel of the set: colour processing (a
    camera's saturation boost, chroma subsampling, denoising) shifts them, while they depend only weakly on the
    scene's brightness."""
    sats = []
    for img in _chw_list(images):
        rgb = _unit(img)
        top, bottom = rgb.max(dim=0).values, rgb.min(dim=0).values
        sats.append(((top - bottom) / top.clamp_min(1e-3)).flatten())
    s = torch.cat(sats)
    return torch.stack([s.mean(), s.std()])


def colour_distance(generated: Images | torch.Tensor, real: Images | torch.Tensor) -> float:
    """Sum of |Δ| of `colour_stats` (saturation mean and std, both in [0, 1])."""
    return float((colour_stats(generated) - colour_stats(real)).abs().sum())


def mean_psnr(outputs: Images | torch.Tensor, targets: Images | torch.Tensor, shave: int) -> float:
    """Mean over images of the RGB PSNR (dB), `shave` px dropped at each border: `evaluate_pairs`' psnr_rgb."""
    out, tgt = _chw_list(outputs), _chw_list(targets)
    if len(out) != len(tgt):
        raise ValueError(f"mean_psnr: {len(out)} outputs for {len(tgt)} targets")
    return sum(psnr(o, t, shave) for o, t in zip(out, tgt, strict=True)) / len(out)


def lr_set_metrics(generated: Images | torch.Tensor, real: Images | torch.Tensor) -> dict[str, float]:
    """Every G-side distance of this module (all: lower is better)."""
    return {
        "spectral_band_distance": spectral_band_distance(generated, real),
        "noise_floor_log_ratio": noise_floor_log_ratio(generated, real),
        "blockiness_difference": blockiness_difference(generated, real),
        "colour_distance": colour_distance(generated, real),
    }
