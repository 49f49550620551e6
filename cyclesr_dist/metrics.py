"""Image quality metrics: PSNR and SSIM on RGB and on Y, and the reference's best-shift PSNR.

Inputs are tensors in [-1, 1] (the model range), CHW or 1xCHW (`psnr`/`psnr_y`/`ssim`/`ssim_y` also take an NCHW
batch and pool it); they are clamped, mapped to [0, 1] and computed in float64. `shave` drops that many pixels at
each border before comparing (the SR convention is shave = scale).

Conventions (NTIRE / BasicSR):
- Y is ITU-R BT.601 luma as MATLAB's `rgb2ycbcr` computes it: Y = 16 + 65.481 R + 128.553 G + 24.966 B with
  R, G, B in [0, 1], i.e. Y in [16, 235] on the [0, 255] scale; PSNR on Y uses peak 255 (here: Y / 255, peak 1).
- SSIM is Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population statistics,
  averaged over the "valid" window positions (no padding), and over channels for RGB: `skimage.metrics.
  structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`, the
  same numbers as on [0, 255] (K1/K2 scale with the data range).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# MATLAB rgb2ycbcr, Y row, for R, G, B in [0, 1]; result on the [0, 255] scale.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _shave(t: torch.Tensor, border: int) -> torch.Tensor:
    return t[..., border:-border, border:-border] if border > 0 else t


def _check_pair(sr: torch.Tensor, hr: torch.Tensor, shave: int, what: str) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"{what}: shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() not in (3, 4):
        raise ValueError(f"{what}: expected a CHW or NCHW tensor, got shape {tuple(sr.shape)}")
    if shave < 0:
        raise ValueError(f"{what}: shave must be >= 0, got {shave}")
    h, w = sr.shape[-2:]
    if h <= 2 * shave or w <= 2 * shave:
        raise ValueError(f"{what}: shave={shave} leaves nothing of a {h}x{w} image")


def _unit64(t: torch.Tensor) -> torch.Tensor:
    """[-1, 1] tensor -> float64 in [0, 1] (clamped, as a saved image would be)."""
    return t.detach().to(torch.float64).clamp(-1, 1).add(1).mul(0.5)


def _single_image(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"{what}: expects one image (CHW or 1xCHW), got a batch of {t.shape[0]}")
        t = t[0]
    return t


def _mse_to_psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def rgb_to_y(t: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] (..., 3, H, W) -> BT.601 Y (MATLAB rgb2ycbcr) as (..., 1, H, W), on [0, 1]: [16, 235] / 255."""
    if t.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected 3 channels, got shape {tuple(t.shape)}")
    r, g, b = t.unbind(dim=-3)
    y = _Y_OFFSET + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b
    return (y / 255.0).unsqueeze(-3)


def psnr(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """PSNR (dB) on RGB over the whole (N)CHW tensor, `shave` pixels dropped at each border."""
    _check_pair(sr, hr, shave, "psnr")
    a = _shave(_unit64(sr), shave)
    b = _shave(_unit64(hr), shave)
    return _mse_to_psnr(torch.mean((a - b) ** 2).item())


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """PSNR (dB) on BT.601 Y (peak 255 on the [0, 255] scale), `shave` pixels dropped at each border."""
    _check_pair(sr, hr, shave, "psnr_y")
    a = _shave(rgb_to_y(_unit64(sr)), shave)
    b = _shave(rgb_to_y(_unit64(hr)), shave)
    return _mse_to_psnr(torch.mean((a - b) ** 2).item())


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _ssim_map_mean(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of NCHW float64 tensors in [0, 1] over valid window positions and all channels."""
    n, c, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim: image of {h}x{w} (after shave) is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window")
    taps = _gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA, a.dtype, a.device).tolist()
    valid = h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1  # separable "valid" Gaussian filter, per channel
    blur = lambda x: _taps_along(_taps_along(x, taps, -1, valid[1]), taps, -2, valid[0])  # noqa: E731
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean().item()


def _batched(t: torch.Tensor) -> torch.Tensor:
    return t.unsqueeze(0) if t.dim() == 3 else t


def ssim(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """SSIM on RGB (mean over channels), `shave` pixels dropped at each border. 1.0 for identical images."""
    _check_pair(sr, hr, shave, "ssim")
    return _ssim_map_mean(_shave(_batched(_unit64(sr)), shave), _shave(_batched(_unit64(hr)), shave))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """SSIM on BT.601 Y (the NTIRE/SR convention), `shave` pixels dropped at each border."""
    _check_pair(sr, hr, shave, "ssim_y")
    a = _shave(rgb_to_y(_batched(_unit64(sr))), shave)
    b = _shave(rgb_to_y(_batched(_unit64(hr))), shave)
    return _ssim_map_mean(a, b)


def lanczos_shift(img: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """CHW `img` resampled at (y + dy, x + dx) for 0 <= dy, dx < 1: separable Lanczos-3 (6 taps, normalised),
    reflect-padded. Zero offsets return `img` itself."""
    out = img
    for axis, frac in ((1, dy), (2, dx)):
        if frac == 0:
            continue
        pos = torch.arange(-2, 4, dtype=img.dtype, device=img.device) - frac
        taps = torch.sinc(pos) * torch.sinc(pos / 3)
        taps = taps / taps.sum()
        pad = (0, 0, 2, 3) if axis == 1 else (2, 3, 0, 0)
        out = _taps_along(F.pad(out[:, None], pad, mode="reflect")[:, 0], taps.tolist(), axis, out.shape[axis])
    return out


def _taps_along(x: torch.Tensor, taps: list[float], dim: int, n: int) -> torch.Tensor:
    """Σ_i taps[i]·x[i : i + n] along `dim`, as slices: float64 convolutions are slow on the CPU (SSIM's, 20x)."""
    out = x.narrow(dim, 0, n) * taps[0]
    for i, t in enumerate(taps[1:], 1):
        out.add_(x.narrow(dim, i, n), alpha=t)
    return out


def best_shift(
    sr: torch.Tensor, hr: torch.Tensor, max_shift: int = 10, shave: int = 0, channel: str = "rgb", subpixel: int = 1
) -> tuple[float, float, float]:
    """(best PSNR, dy, dx) over shifts |dy|, |dx| <= max_shift, SR pixel (y, x) compared to HR (y+dy, x+dx).

    `subpixel` = k > 1 searches a 1/k-pixel grid: the SR image is resampled at each fractional offset first
    (`lanczos_shift`, whose slight low-pass makes those a little pessimistic). A camera's sampling grid need not sit
    where bicubic's does, and a constant offset cannot be learned without pairs: this measures how much of an error
    is that offset. With k = 1 (integer shifts) the definition below is the reference's.

    The SR image minus a border of b = max(shave, max_shift) pixels is compared with every same-sized HR window
    within ±max_shift of it. With shave <= max_shift this is exactly the reference's `find_best_PSNR(HR, SR,
    crop_size=max_shift)` (its `val_ps_offset`); with max_shift = 0 it is `psnr(sr, hr, shave)`.

    All (2K+1)^2 mean squared errors come from one FFT cross-correlation (float64) plus box sums, so the cost does
    not grow with K; the winning shift's PSNR is then recomputed directly.
    """
    if channel not in ("rgb", "y"):
        raise ValueError(f"best_shift: channel must be 'rgb' or 'y', got {channel!r}")
    if max_shift < 0:
        raise ValueError(f"best_shift: max_shift must be >= 0, got {max_shift}")
    if subpixel < 1:
        raise ValueError(f"best_shift: subpixel must be >= 1 (steps per pixel), got {subpixel}")
    sr = _single_image(sr, "best_shift")
    hr = _single_image(hr, "best_shift")
    border = max(shave, max_shift, 3 if subpixel > 1 else 0)  # the resampling's reflected border stays out
    _check_pair(sr, hr, border, "best_shift")
    a, b = _unit64(sr), _unit64(hr)
    if channel == "y":
        a, b = rgb_to_y(a), rgb_to_y(b)
    fractions = [(i / subpixel, j / subpixel) for i in range(subpixel) for j in range(subpixel)]
    found = [_integer_best_shift(lanczos_shift(a, *f), b, max_shift, border) + f for f in fractions]
    value, dy, dx, fy, fx = max(found, key=lambda f: f[0])
    # SR resampled at y + fy, compared to HR at y + dy: SR pixel y lines up with HR y + dy − fy
    return value, dy - fy if fy else dy, dx - fx if fx else dx


def _integer_best_shift(a: torch.Tensor, b: torch.Tensor, max_shift: int, border: int) -> tuple[float, int, int]:
    k = max_shift
    _, h, w = a.shape
    sc = a[:, border : h - border, border : w - border]  # SR centre, (c, hc, wc)
    hc, wc = sc.shape[-2:]
    # The HR windows start at rows/cols (border - k) .. (border + k); restrict HR to the area they cover.
    top = border - k
    hr_area = b[:, top : top + hc + 2 * k, top : top + wc + 2 * k]
    if k == 0:
        best_dy = best_dx = 0
    else:
        ah, aw = hr_area.shape[-2:]
        # sum_{y,x} (H[y+i, x+j] - S[y, x])^2 = sum H^2 over the window - 2 corr(H, S)[i, j] + sum S^2
        corr = torch.fft.irfft2(
            torch.fft.rfft2(hr_area, s=(ah, aw)) * torch.conj(torch.fft.rfft2(sc, s=(ah, aw))), s=(ah, aw)
        )[:, : 2 * k + 1, : 2 * k + 1].sum(0)
        sq = F.pad((hr_area**2).sum(0).cumsum(0).cumsum(1), (1, 0, 1, 0))
        box = sq[hc:, wc:] - sq[:-hc, wc:] - sq[hc:, :-wc] + sq[:-hc, :-wc]  # window sums, (2k+1, 2k+1)
        sse = box - 2 * corr + (sc**2).sum()
        idx = int(torch.argmin(sse))
        best_dy, best_dx = idx // (2 * k + 1) - k, idx % (2 * k + 1) - k
    window = hr_area[:, k + best_dy : k + best_dy + hc, k + best_dx : k + best_dx + wc]
    return _mse_to_psnr(torch.mean((window - sc) ** 2).item()), best_dy, best_dx


def best_shift_psnr(
    sr: torch.Tensor, hr: torch.Tensor, max_shift: int = 10, shave: int = 0, channel: str = "rgb", subpixel: int = 1
) -> float:
    """Best PSNR (dB) over shifts within ±`max_shift` pixels on a 1/`subpixel` grid; see `best_shift`."""
    return best_shift(sr, hr, max_shift=max_shift, shave=shave, channel=channel, subpixel=subpixel)[0]


def image_metrics(
    sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, max_shift: int = 0, subpixel: int = 1
) -> dict[str, float]:
    """psnr_rgb, ssim_rgb, psnr_y, ssim_y (and psnr_rgb_best_shift when max_shift > 0, over shifts on a
    1/`subpixel` pixel grid) of one image pair."""
    out = {
        "psnr_rgb": psnr(sr, hr, shave),
        "ssim_rgb": ssim(sr, hr, shave),
        "psnr_y": psnr_y(sr, hr, shave),
        "ssim_y": ssim_y(sr, hr, shave),
    }
    if max_shift > 0:
        out["psnr_rgb_best_shift"] = best_shift_psnr(sr, hr, max_shift=max_shift, shave=shave, subpixel=subpixel)
    return out


def _radial_log_power(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum (dB) of N×H×W float64 images, pooled over the batch: mean removed,
    Hann-windowed (so the border jump does not leak into every frequency), |FFT|² averaged in rings of width
    1/min(H, W) cycles/px out to 0.5 (DC excluded). Returns (ring centre frequencies, 10·log10 power)."""
    n, h, w = gray.shape
    x = gray - gray.mean(dim=(-2, -1), keepdim=True)
    window = torch.outer(
        torch.hann_window(h, periodic=False, dtype=x.dtype), torch.hann_window(w, periodic=False, dtype=x.dtype)
    )
    power = torch.fft.fft2(x * window).abs().pow(2).mean(0) / (h * w)
    fy, fx = torch.fft.fftfreq(h, dtype=x.dtype), torch.fft.fftfreq(w, dtype=x.dtype)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    n_rings = min(h, w) // 2
    ring = torch.floor(radius * 2 * n_rings).long()  # ring k covers [k, k+1) / (2·n_rings) cycles/px
    keep = (ring >= 1) & (ring < n_rings)
    sums = torch.zeros(n_rings, dtype=x.dtype).index_add_(0, ring[keep], power[keep])
    counts = torch.zeros(n_rings, dtype=x.dtype).index_add_(0, ring[keep], torch.ones_like(power[keep]))
    freqs = (torch.arange(n_rings, dtype=x.dtype) + 0.5) / (2 * n_rings)
    ok = counts > 0
    ok[0] = False
    return freqs[ok], 10 * torch.log10(sums[ok] / counts[ok] + 1e-12)


def _fine_band_sigma(gray: torch.Tensor) -> float:
    """Robust std (1.4826 · median absolute deviation) of x − box3×3(x), the band where noise and JPEG live."""
    residual = gray - F.avg_pool2d(F.pad(gray[:, None], (1, 1, 1, 1), mode="reflect"), 3, 1)[:, 0]
    residual = residual.flatten()
    return 1.4826 * float((residual - residual.median()).abs().median())


def translation_metrics(generated: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """How close generated LR images (a translation network's output) are to the real LR they imitate.

    NCHW (or CHW) tensors in [-1, 1], the same shape; they need not show the same pixels for the statistics:
    - `psnr`: RGB PSNR (dB, peak 255 on the 0–255 scale) of the pixel-wise match, pooled over the batch;
    - `spectral_distance`: mean |difference| (dB) between the two radially averaged power spectra of the grey
      images (mean of R, G, B on the 0–255 scale; mean removed, Hann window, rings of width 1/min(H, W)
      cycles/px up to 0.5, pooled over the batch). 0 for identical spectra; blur lowers the high rings, noise
      and JPEG raise them, so it measures whether the *kind* of degradation matches;
    - `spectral_distance_high`: the same over the upper half of the band only (≥ 0.25 cycles/px);
    - `noise_std_ratio`: robust std (1.4826·MAD) of the grey image's fine band x − box3×3(x), generated over
      target: 1 when the per-pixel noise / texture level matches, > 1 noisier, < 1 smoother.
    """
    if generated.shape != target.shape:
        raise ValueError(f"translation_metrics: shapes differ: {tuple(generated.shape)} vs {tuple(target.shape)}")
    if generated.dim() not in (3, 4) or generated.shape[-3] != 3:
        raise ValueError(f"translation_metrics: expected (N)CHW RGB tensors, got shape {tuple(generated.shape)}")
    if min(generated.shape[-2:]) < 8:
        raise ValueError(f"translation_metrics: images of {tuple(generated.shape[-2:])} are too small (< 8 px)")
    gen, tgt = _batched(generated), _batched(target)
    gray_gen, gray_tgt = (_unit64(t).mean(dim=1) * 255 for t in (gen, tgt))
    freqs, spec_gen = _radial_log_power(gray_gen)
    _, spec_tgt = _radial_log_power(gray_tgt)
    diff = (spec_gen - spec_tgt).abs()
    sigma_tgt = _fine_band_sigma(gray_tgt)
    sigma_gen = _fine_band_sigma(gray_gen)
    return {
        "psnr": psnr(gen, tgt),
        "spectral_distance": float(diff.mean()),
        "spectral_distance_high": float(diff[freqs >= 0.25].mean()),
        "noise_std_ratio": sigma_gen / sigma_tgt if sigma_tgt > 0 else (1.0 if sigma_gen == 0 else float("inf")),
    }
