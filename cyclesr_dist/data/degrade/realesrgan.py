"""Real-ESRGAN's second-order (blind) random degradation, RealESRNet x4plus options (package docstring)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy.ndimage import correlate1d
from scipy.signal import fftconvolve

from .common import check_input, jpeg, no_more, to_uint8

# The RealESRNet x4plus training options (module docstring); `sizes` are the odd kernel sizes drawn from.
REALESRGAN_OPTIONS: dict = {
    "kernel_sizes": (7, 9, 11, 13, 15, 17, 19, 21),
    "kernel_list": ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"),
    "kernel_prob": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    "sinc_prob": 0.1,
    "blur_sigma": (0.2, 3.0),
    "betag_range": (0.5, 4.0),
    "betap_range": (1.0, 2.0),
    "sinc_prob2": 0.1,
    "blur_sigma2": (0.2, 1.5),
    "final_sinc_prob": 0.8,
    "resize_prob": (0.2, 0.7, 0.1),  # up, down, keep
    "resize_range": (0.15, 1.5),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30.0, 95.0),
    "second_blur_prob": 0.8,
    "resize_prob2": (0.3, 0.4, 0.3),
    "resize_range2": (0.3, 1.2),
    "gaussian_noise_prob2": 0.5,
    "noise_range2": (1.0, 25.0),
    "poisson_scale_range2": (0.05, 2.5),
    "gray_noise_prob2": 0.4,
    "jpeg_range2": (30.0, 95.0),
    "resize_modes": ("area", "bilinear", "bicubic"),
    "usm_size": 51,
    "usm_sigma": 8.0,  # what a zero σ means for a 51-tap Gaussian: 0.3·((51 − 1)/2 − 1) + 0.8
    "usm_weight": 0.5,
    "usm_threshold": 10.0,  # on the 0–255 scale
}


def _usm(img: np.ndarray) -> np.ndarray:
    """Unsharp mask of a float HxWx3 image in [0, 1]: sharpen by weight·(x − G(x)), but only where the residual
    exceeds the threshold (a Gaussian-softened mask), so flat areas and their noise stay as they were."""
    o = REALESRGAN_OPTIONS
    t = np.arange(o["usm_size"]) - (o["usm_size"] - 1) / 2
    k = np.exp(-0.5 * (t / o["usm_sigma"]) ** 2)
    k = (k / k.sum()).astype(np.float32)

    def blur(x: np.ndarray) -> np.ndarray:
        return correlate1d(correlate1d(x, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")

    residual = img - blur(img)
    mask = blur((np.abs(residual) * 255 > o["usm_threshold"]).astype(np.float32))
    sharp = np.clip(img + np.float32(o["usm_weight"]) * residual, 0, 1)
    return mask * sharp + (1 - mask) * img


def usm_sharpen(hr: np.ndarray) -> np.ndarray:
    """The blind recipe's sharpened training target: uint8 HxWx3 -> uint8 HxWx3 (module docstring)."""
    return to_uint8(_usm(hr.astype(np.float32) / 255))


def _sinc_kernel(cutoff: float, size: int) -> np.ndarray:
    """Circularly symmetric ideal low-pass (2D sinc, Bessel J1) with `cutoff` in radians/px, size×size, sum 1."""
    t = np.arange(size) - (size - 1) / 2
    rr = np.hypot(t[:, None], t[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * rr) / (2 * np.pi * rr)
    k[rr == 0] = cutoff**2 / (4 * np.pi)
    return k / k.sum()


def _shaped_kernel(kind: str, size: int, sx: float, sy: float, theta: float, beta: float) -> np.ndarray:
    """Gaussian, generalized Gaussian exp(−½·q^β) or plateau 1/(1 + q^β), q = vᵀΣ⁻¹v, v = (x, y) from the centre,
    Σ = R(θ)·diag(σx², σy²)·R(θ)ᵀ; sums to 1."""
    t = np.arange(size) - (size - 1) / 2
    xs, ys = np.meshgrid(t, t)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(rot @ np.diag([sx**2, sy**2]) @ rot.T)
    q = inv[0, 0] * xs**2 + (inv[0, 1] + inv[1, 0]) * xs * ys + inv[1, 1] * ys**2
    if kind.startswith("plateau"):
        k = 1.0 / (1.0 + q**beta)
    elif kind.startswith("generalized"):
        k = np.exp(-0.5 * q**beta)
    else:
        k = np.exp(-0.5 * q)
    return k / k.sum()


def _random_kernel(rng: np.random.Generator, sigma_range: tuple[float, float], sinc_prob: float) -> np.ndarray:
    o = REALESRGAN_OPTIONS
    size = int(o["kernel_sizes"][rng.integers(len(o["kernel_sizes"]))])
    if rng.random() < sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return _sinc_kernel(cutoff, size)
    kind = o["kernel_list"][rng.choice(len(o["kernel_list"]), p=o["kernel_prob"])]
    sx = rng.uniform(*sigma_range)
    sy, theta = (rng.uniform(*sigma_range), rng.uniform(-np.pi, np.pi)) if "aniso" in kind else (sx, 0.0)
    beta = 1.0
    if kind.startswith("generalized") or kind.startswith("plateau"):
        lo, hi = o["betag_range"] if kind.startswith("generalized") else o["betap_range"]
        beta = rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi)
    return _shaped_kernel(kind, size, sx, sy, theta, beta)


def _blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel with `kernel` (odd size), border reflected (edge pixel not repeated)."""
    r = kernel.shape[0] // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    flipped = kernel[::-1, ::-1, None].astype(np.float32)
    return fftconvolve(padded, flipped, mode="valid", axes=(0, 1)).astype(np.float32)


def _resize_matrix(n_in: int, n_out: int, mode: str, step: float | None = None) -> np.ndarray:
    """n_out×n_in weights of a 1D resize without antialiasing: output i samples input coordinate
    (i + ½)·step − ½ (step = n_in / n_out unless given); area = adaptive average pooling."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    i = np.arange(n_out)
    if mode == "area":
        starts, ends = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        for row, (a, b) in enumerate(zip(starts, ends, strict=True)):
            m[row, a:b] = 1.0 / (b - a)
        return m
    step = n_in / n_out if step is None else step
    src = (i + 0.5) * step - 0.5
    if mode == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = src - i0
        np.add.at(m, (i, i0), 1 - frac)
        np.add.at(m, (i, i1), frac)
        return m
    if mode != "bicubic":
        raise ValueError(f"unknown resize mode {mode!r}")
    a = -0.75
    i0 = np.floor(src).astype(int)
    t = src - i0
    for tap, d in zip((-1, 0, 1, 2), (1 + t, t, 1 - t, 2 - t), strict=True):
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        np.add.at(m, (i, np.clip(i0 + tap, 0, n_in - 1)), np.where(d <= 1, near, far))
    return m


def _resize(img: np.ndarray, out_h: int, out_w: int, mode: str, step: float | None = None) -> np.ndarray:
    ry = _resize_matrix(img.shape[0], out_h, mode, step)
    rx = _resize_matrix(img.shape[1], out_w, mode, step)
    return np.einsum("oh,hwc->owc", ry, np.einsum("pw,hwc->hpc", rx, img, optimize=True), optimize=True)


def _random_noise(img: np.ndarray, rng: np.random.Generator, stage: str) -> np.ndarray:
    """Gaussian or Poisson noise (p = gaussian_noise_prob), colour or grey (one plane for all channels)."""
    o = REALESRGAN_OPTIONS
    h, w, _ = img.shape
    if rng.random() < o[f"gaussian_noise_prob{stage}"]:
        sigma = rng.uniform(*o[f"noise_range{stage}"]) / 255
        gray = rng.random() < o[f"gray_noise_prob{stage}"]
        noise = rng.standard_normal((h, w, 1 if gray else 3), dtype=np.float32) * np.float32(sigma)
    else:
        scale = rng.uniform(*o[f"poisson_scale_range{stage}"])
        gray = rng.random() < o[f"gray_noise_prob{stage}"]
        base = img @ np.array([0.2989, 0.587, 0.114], dtype=np.float32) if gray else img
        codes = to_uint8(base)  # counted on the 8-bit levels: 2^⌈log2(#levels)⌉ photon "counts" per unit
        levels = 2.0 ** math.ceil(math.log2(max(1, np.count_nonzero(np.bincount(codes.ravel(), minlength=256)))))
        base = codes.astype(np.float32) / 255
        noise = (rng.poisson(base * levels).astype(np.float32) / np.float32(levels) - base) * np.float32(scale)
        noise = noise[..., None] if gray else noise
    return np.clip(img + noise, 0, 1)


def _random_jpeg(img: np.ndarray, rng: np.random.Generator, quality_range: tuple[float, float]) -> np.ndarray:
    quality = round(rng.uniform(*quality_range))
    return jpeg(to_uint8(img), quality).astype(np.float32) / 255


def _random_resize_factor(rng: np.random.Generator, probs: tuple, rng_range: tuple) -> float:
    kind = rng.choice(3, p=probs)
    return rng.uniform(1, rng_range[1]) if kind == 0 else rng.uniform(rng_range[0], 1) if kind == 1 else 1.0


def degrade_realesrgan(hr: np.ndarray, rng: np.random.Generator, scale: int = 4, **fixed) -> np.ndarray:
    """Real-ESRGAN's blind second-order degradation (RealESRNet x4plus options, `REALESRGAN_OPTIONS`), applied to
    the unsharp-masked HR; module docstring. No fixed names."""
    check_input(hr, scale, "realesrgan")
    no_more(fixed, "realesrgan", ())
    o = REALESRGAN_OPTIONS
    modes = o["resize_modes"]
    h, w = hr.shape[:2]
    kernel1 = _random_kernel(rng, o["blur_sigma"], o["sinc_prob"])
    kernel2 = _random_kernel(rng, o["blur_sigma2"], o["sinc_prob2"])
    final_sinc = None
    if rng.random() < o["final_sinc_prob"]:
        size = int(o["kernel_sizes"][rng.integers(len(o["kernel_sizes"]))])
        final_sinc = _sinc_kernel(rng.uniform(np.pi / 3, np.pi), size)

    out = _blur(_usm(hr.astype(np.float32) / 255), kernel1)  # first order
    factor = _random_resize_factor(rng, o["resize_prob"], o["resize_range"])
    mode = modes[rng.integers(3)]
    out = _resize(out, max(1, math.floor(h * factor)), max(1, math.floor(w * factor)), mode, step=1 / factor)
    out = _random_jpeg(_random_noise(out, rng, ""), rng, o["jpeg_range"])

    if rng.random() < o["second_blur_prob"]:  # second order
        out = _blur(out, kernel2)
    factor = _random_resize_factor(rng, o["resize_prob2"], o["resize_range2"])
    mode = modes[rng.integers(3)]
    out = _resize(out, max(1, int(h / scale * factor)), max(1, int(w / scale * factor)), mode)
    out = _random_noise(out, rng, "2")

    def back(x: np.ndarray) -> np.ndarray:  # resize to the LR size, then the final sinc
        x = _resize(x, h // scale, w // scale, modes[rng.integers(3)])
        return x if final_sinc is None else _blur(x, final_sinc)

    if rng.random() < 0.5:
        out = _random_jpeg(np.clip(back(out), 0, 1), rng, o["jpeg_range2"])
    else:
        out = back(_random_jpeg(out, rng, o["jpeg_range2"]))
    return to_uint8(out)
