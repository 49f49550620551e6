"""Three operator families the first four do not cover (parameters in the package docstring): a chain of two
resizers with a JPEG between them, a phone-like pipeline whose denoiser smooths before the compression, and a
webcam's video frame (a defocus disk, colour fringes, heavy compression and a decoder's deblocking filter). They
were added as held-out families: no recipe choice was made on them before they joined the suite."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import convolve2d

from .common import (
    add_noise,
    box_taps,
    check_input,
    draw_phase,
    jpeg,
    no_more,
    pick,
    sample_grid,
    split_phase,
    to_uint8,
)


def lanczos_taps(factor: int, frac: float, lobes: int = 3) -> tuple[np.ndarray, int]:
    """1D weights of an antialiased Lanczos-`lobes` ×1/factor resize whose sample sits `frac` ∈ [0, 1) past an
    integer position: the kernel stretched by `factor` (as an image library's antialiased resize does), its
    negative lobes kept; (weights, t0) with tap a at offset t0 + a."""
    r = lobes * factor
    t = np.arange(-r, r + 2, dtype=np.float64)
    x = (t - frac) / factor
    w = np.where(np.abs(x) < lobes, np.sinc(x) * np.sinc(x / lobes), 0.0)
    keep = np.nonzero(w)[0]
    w = w[keep[0] : keep[-1] + 1]
    return w / w.sum(), int(t[keep[0]])


# Keys' cubic (a = −0.5) at distances 1.5, 0.5, 0.5, 1.5: a ×1/2 resize without antialiasing samples half-way
# between two pixels, so it reads four with these weights (the two outer ones negative).
_CUBIC_HALF = np.array([-0.0625, 0.5625, 0.5625, -0.0625])


def degrade_resize_chain(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Two resizers with a JPEG between them: antialiased Lanczos-3 ×2/s at the phase, JPEG, Keys cubic ×1/2
    without antialiasing, light noise, JPEG. Fixed names: phase, quality1, noise, quality (package docstring)."""
    check_input(hr, scale, "resize_chain")
    if scale % 2:
        raise ValueError(f"resize_chain: scale must be even (its last resize halves), got {scale}")
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    quality1 = pick(fixed, "quality1", int(rng.integers(60, 86)))
    noise = pick(fixed, "noise", rng.uniform(0.5, 1.5) / 255)
    quality = pick(fixed, "quality", int(rng.integers(80, 96)))
    no_more(fixed, "resize_chain", ("phase", "quality1", "noise", "quality"))
    first = scale // 2
    # The whole phase sits in the first resize: mid pixel i at HR first·i + (first − 1)/2 + phase, and the last
    # resize's sample half-way between mid pixels 2j and 2j + 1 lands at HR s·j + (s − 1)/2 + phase.
    (y0, fy), (x0, fx) = split_phase(phase[0], first), split_phase(phase[1], first)
    (wy, ty), (wx, tx) = lanczos_taps(first, fy), lanczos_taps(first, fx)
    img = hr.astype(np.float32) / 255
    mid = sample_grid(img, np.outer(wy, wx).astype(np.float32), (y0 + ty, x0 + tx), first)
    mid = jpeg(to_uint8(mid), quality1).astype(np.float32) / 255
    lr = sample_grid(mid, np.outer(_CUBIC_HALF, _CUBIC_HALF).astype(np.float32), (-1, -1), 2)
    return jpeg(to_uint8(add_noise(lr, noise, rng)), quality)


# JFIF's RGB <-> YCbCr (full range, chroma centred at 0 here).
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_FROM_YCC = np.linalg.inv(_TO_YCC).astype(np.float32)


def _blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(plane.dtype)
    return correlate1d(correlate1d(plane, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")


def bilateral(plane: np.ndarray, sigma_space: float, sigma_range: float, radius: int = 2) -> np.ndarray:
    """Edge-preserving smoothing of one plane: each pixel the mean of its (2r+1)² neighbours weighted by distance
    (σ_space px) and by difference in value (σ_range), the way a phone's denoiser flattens fine texture."""
    padded = np.pad(plane, radius, mode="reflect")
    h, w = plane.shape
    num = np.zeros_like(plane)
    den = np.zeros_like(plane)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            other = padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            weight = np.exp(-0.5 * ((dy * dy + dx * dx) / sigma_space**2 + ((other - plane) / sigma_range) ** 2))
            num += weight * other
            den += weight
    return num / den


_PHONE_NAMES = ("sigma", "phase", "shot", "read", "strength", "chroma_blur", "saturation", "amount", "quality")


def degrade_phone(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Phone-like: optics blur, s×s pixel aperture at the phase, Poisson-Gaussian noise per channel, a denoiser
    (bilateral on luma, Gaussian on chroma), a saturation boost, luma sharpening, JPEG. Fixed names: sigma,
    phase, shot, read, strength, chroma_blur, saturation, amount, quality (package docstring)."""
    check_input(hr, scale, "phone")
    sigma = pick(fixed, "sigma", rng.uniform(0.6, 1.2))
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    shot = pick(fixed, "shot", float(np.exp(rng.uniform(np.log(3e-4), np.log(2e-3)))))
    read = pick(fixed, "read", rng.uniform(1.0, 3.0) / 255)
    strength = pick(fixed, "strength", rng.uniform(1.5, 3.0))
    chroma_blur = pick(fixed, "chroma_blur", rng.uniform(1.0, 2.0))
    saturation = pick(fixed, "saturation", rng.uniform(1.0, 1.2))
    amount = pick(fixed, "amount", rng.uniform(0.3, 0.8))
    quality = pick(fixed, "quality", int(rng.integers(60, 86)))
    no_more(fixed, "phone", _PHONE_NAMES)
    (y0, fy), (x0, fx) = split_phase(phase[0], scale), split_phase(phase[1], scale)
    (by, ty), (bx, tx) = box_taps(scale, fy), box_taps(scale, fx)
    r = max(1, math.ceil(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    kernel = np.outer(np.convolve(g, by), np.convolve(g, bx)).astype(np.float32)  # optics ⊛ pixel aperture
    lr = sample_grid(hr.astype(np.float32) / 255, kernel, (y0 + ty - r, x0 + tx - r), scale)
    lr = np.clip(lr, 0, 1)
    lr = rng.poisson(lr / shot).astype(np.float32) * np.float32(shot)
    lr = add_noise(lr, read, rng)
    ycc = lr @ _TO_YCC.T
    # The denoiser's range scale follows the noise it expects at mid-grey, as a tuned phone denoiser's does.
    noise_at_mid = math.sqrt(0.5 * shot + read**2)
    luma = bilateral(ycc[..., 0], 1.2, strength * noise_at_mid)
    luma = luma + np.float32(amount) * (luma - _blur(luma, 1.0))
    chroma = [np.float32(saturation) * _blur(ycc[..., c], chroma_blur) for c in (1, 2)]
    rgb = np.stack([luma, *chroma], axis=-1) @ _FROM_YCC.T
    return jpeg(to_uint8(rgb), quality)


def pillbox(radius: float, centre: tuple[float, float], reach: int, supersample: int = 8) -> np.ndarray:
    """A defocused lens's point spread: a uniform disk of `radius` HR px centred at `centre` (offsets from tap
    `reach`), each tap the fraction of its pixel cell the disk covers (`supersample`² points per cell), on taps
    −reach..reach per axis, normalised to sum 1. Flat with a hard rim, unlike a Gaussian: its spectrum has zeros."""
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    t = (np.arange(-reach, reach + 1)[:, None] + sub[None, :]).ravel()
    ys, xs = t[:, None] - centre[0], t[None, :] - centre[1]
    inside = (ys**2 + xs**2 <= radius**2).astype(np.float64)
    n = 2 * reach + 1
    k = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    return k / k.sum()


def deblock(img: np.ndarray, alpha: float, block: int = 8) -> np.ndarray:
    """A video decoder's deblocking filter, simplified: across each `block`-px boundary, where the step is under
    `alpha` and both sides are smooth (under alpha / 3), the two pixels either side move towards each other by
    the step's filtered part (clipped to alpha / 2) and the next ones by half that; real edges are left."""
    out = img.copy()
    for axis in (1, 0):
        view = np.moveaxis(out, axis, 0)  # a view: writes land in `out`
        edges = np.arange(block, view.shape[0] - 1, block)
        p1, p0, q0, q1 = (view[edges + k].copy() for k in (-2, -1, 0, 1))
        smooth = (np.abs(q0 - p0) < alpha) & (np.abs(p1 - p0) < alpha / 3) & (np.abs(q1 - q0) < alpha / 3)
        delta = np.clip((4 * (q0 - p0) + (p1 - q1)) / 8, -alpha / 2, alpha / 2) * smooth
        view[edges - 2], view[edges - 1] = p1 + delta / 2, p0 + delta
        view[edges], view[edges + 1] = q0 - delta, q1 - delta / 2
    return out


_WEBCAM_NAMES = ("radius", "aberration", "angle", "phase", "noise", "quality", "deblock")


def degrade_webcam(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """A webcam's video frame: a defocus disk whose red and blue images sit apart (lateral chromatic aberration),
    the s×s pixel aperture at the phase, Gaussian noise, heavy 4:2:0 compression, then the decoder's deblocking
    filter. Fixed names: radius, aberration, angle, phase, noise, quality, deblock (package docstring)."""
    check_input(hr, scale, "webcam")
    radius = pick(fixed, "radius", rng.uniform(1.0, 2.5))
    aberration = pick(fixed, "aberration", rng.uniform(0.3, 1.2))
    angle = pick(fixed, "angle", rng.uniform(0, 2 * math.pi))
    phase = pick(fixed, "phase", draw_phase(rng, scale))
    noise = pick(fixed, "noise", rng.uniform(1.0, 3.0) / 255)
    quality = pick(fixed, "quality", int(rng.integers(30, 56)))
    alpha = pick(fixed, "deblock", rng.uniform(8.0, 24.0) / 255)
    no_more(fixed, "webcam", _WEBCAM_NAMES)
    (y0, fy), (x0, fx) = split_phase(phase[0], scale), split_phase(phase[1], scale)
    taps, t0 = box_taps(scale, 0.0)  # the aperture centred on the sample; the phase's fraction moves the disk
    box = np.outer(taps, taps)
    reach = math.ceil(radius + aberration) + 2
    img = hr.astype(np.float32) / 255
    planes = []
    for channel, side in enumerate((1.0, 0.0, -1.0)):  # red one way, green in place, blue the other
        centre = (fy + side * aberration * math.sin(angle), fx + side * aberration * math.cos(angle))
        kernel = convolve2d(pillbox(radius, centre, reach), box)  # disk ⊛ pixel aperture
        origin = (y0 + t0 - reach, x0 + t0 - reach)
        planes.append(sample_grid(img[..., channel], kernel.astype(np.float32), origin, scale))
    lr = add_noise(np.stack(planes, axis=-1), noise, rng)
    decoded = jpeg(to_uint8(lr), quality).astype(np.float32) / 255
    return to_uint8(deblock(decoded, alpha))
