"""Image I/O and the value range used everywhere.

Convention: image tensors everywhere outside a network's own arithmetic (data, metrics, serving) are float32 in
**[-1, 1]** (CycleGAN's tanh range), CHW (or NCHW). Files on disk and tar members are 8-bit RGB. A recipe may
train its networks on another range (`data.value_range`, e.g. vega's [0, 1]); `to_value_range` /
`from_value_range` convert at the network's boundary, the only place that range exists.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..atomic import atomic_write
from ..errors import BadInput, InputNotFound
from ..torch_utils import gaussian_taps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, I;16, CMYK, ...) and EXIF orientation -> upright RGB uint8."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) greyscale: scale to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent pixels do not become black garbage.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an upright HxWx3 uint8 array. Raises on unreadable files."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(pil_to_rgb(img), dtype=np.uint8).copy()


def read_image(path: str | Path) -> np.ndarray:
    """`load_rgb` for a file the user named: a missing or undecodable file is a one-line user error."""
    try:
        return load_rgb(path)
    except FileNotFoundError as exn:
        raise InputNotFound(f"image not found: {path}") from exn
    except (OSError, ValueError, Image.DecompressionBombError) as exn:
        raise BadInput(f"cannot read image {path}: {exn}") from exn


def check_image(path: str | Path) -> None:
    """Fail early (header and structure check, no full decode) for a file `read_image` would refuse."""
    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError as exn:
        raise InputNotFound(f"image not found: {path}") from exn
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exn:
        raise BadInput(f"cannot read image {path}: {exn}") from exn


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (a tar member) to HxWx3 uint8."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(pil_to_rgb(img), dtype=np.uint8).copy()


def encode_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_npy(arr: np.ndarray) -> bytes:
    """HxWx3 uint8 as NumPy's `.npy` bytes: the pixels as they are, read back with a copy instead of a decode."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    """`.npy` bytes -> HxWx3 uint8; ValueError for anything else (another shape or type, not an array)."""
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"not an HxWx3 uint8 image: {arr.dtype} {arr.shape}")
    return arr


# How shards store crops: `png` (lossless, compressed) or `npy` (raw pixels, about twice a photo's PNG bytes; a
# loader worker reads one in ~0.1 ms where a 480² PNG takes ~9 ms to decode). The member's extension says which.
CROP_ENCODINGS = {"png": encode_png, "npy": encode_npy}


def save_rgb(arr: np.ndarray, path: str | Path) -> None:
    """Write an HxWx3 uint8 image (format from the suffix), atomically: a reader never sees half a file."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    atomic_write(path, lambda f: Image.fromarray(arr).save(f, format=fmt))


def uint8_to_pixels(arr: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 (any strides: a flipped or rotated view) -> a contiguous 3xHxW uint8 tensor of its own: the
    decoded pixels as training batches carry them, a quarter of float32's bytes through the loader's workers and
    onto the device. Always one copy, made in the layout the tensor ops after it read fastest: the worker's clean LR
    on a 3xHxW view of HxWx3 memory took twice as long (its reflect pad ten times), and batching copied it again."""
    if arr.dtype != np.uint8:  # `to_model_range` reads any integer tensor as 8-bit pixels
        raise TypeError(f"pixels must be uint8, got {arr.dtype}")
    return torch.from_numpy(arr.transpose(2, 0, 1).copy(order="C"))


def to_model_range(t: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape, any device) -> float32 in [-1, 1]; a floating tensor is already in model range and
    is returned as is. The one rule from pixels to model values."""
    if t.is_floating_point():
        return t
    return t.float().div_(127.5).sub_(1.0)


def batch_to_model(batch: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A training batch (uint8 pixels and model-range floats) on `device` in model range: the pixels cross as
    uint8, a quarter of float32's bytes on the way to an accelerator, and are mapped there."""
    return {k: to_model_range(v.to(device, non_blocking=True)) for k, v in batch.items()}


def uint8_to_model(arr: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [-1, 1]."""
    return to_model_range(uint8_to_pixels(arr))


def model_to_uint8(t: torch.Tensor) -> np.ndarray:
    """3xHxW tensor in [-1, 1] -> HxWx3 uint8 (rounded, clipped)."""
    t = t.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round()
    return t.to(torch.uint8).permute(1, 2, 0).numpy()


DATA_RANGE = (-1.0, 1.0)


def to_value_range(t: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """[-1, 1] -> `value_range` (affine); the tensor itself when that is [-1, 1], so the default costs nothing."""
    low, high = value_range
    if (low, high) == DATA_RANGE:
        return t
    return t.add(1).mul((high - low) / 2).add(low)


def from_value_range(t: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """`value_range` -> [-1, 1], the inverse of `to_value_range`."""
    low, high = value_range
    if (low, high) == DATA_RANGE:
        return t
    return t.sub(low).mul(2 / (high - low)).sub(1)


def bicubic_resize(t: torch.Tensor, scale: float) -> torch.Tensor:
    """Antialiased bicubic resize of a CHW or NCHW tensor by `scale` (0.25 = the clean ×4 downscale)."""
    squeeze = t.dim() == 3
    batch = t.unsqueeze(0) if squeeze else t
    out = F.interpolate(batch, scale_factor=scale, mode="bicubic", antialias=scale < 1, align_corners=False)
    return out.squeeze(0) if squeeze else out


# The clean LR of CycleSR's X domain, what G is given (`data.hr_to_lr`); both ×1/s on bicubic's grid (LR pixel i
# centred at HR pixel s·i + (s−1)/2):
#   bicubic  antialiased bicubic, the reference's: no aliasing, so G has none to keep
#   sampled  a Gaussian of σ SAMPLED_SIGMA HR px, then the centre of each s×s cell (bilinear between its middle
#            pixels, no antialiasing): aliased as a point decimation or a camera's sampling is, which G can then
#            keep instead of having to invent it (measured: docs/history/quality-four-operators.md)
CLEAN_LR = ("bicubic", "sampled")
SAMPLED_SIGMA = 1.0


def clean_lr_kind(hr_to_lr: str) -> str:
    """The clean LR G is measured and validated on under `data.hr_to_lr`: that one when it names a clean LR, else
    bicubic (a run supervised on synthetic pairs has a G that nothing trains)."""
    return hr_to_lr if hr_to_lr in CLEAN_LR else "bicubic"


def clean_downscale(t: torch.Tensor, scale: int, kind: str = "bicubic") -> torch.Tensor:
    """The clean LR (`CLEAN_LR` `kind`) of an HR image tensor (CHW or NCHW, [-1, 1]), clamped to the range
    (bicubic overshoots at edges)."""
    if kind == "bicubic":
        return bicubic_resize(t, 1.0 / scale).clamp_(-1.0, 1.0)
    if kind != "sampled":
        raise ValueError(f"unknown clean LR {kind!r}; valid: {', '.join(CLEAN_LR)}")
    out = _blur_then_cell_centres(t.unsqueeze(0) if t.dim() == 3 else t, scale)
    return (out.squeeze(0) if t.dim() == 3 else out).clamp_(-1.0, 1.0)


def _blur_then_cell_centres(batch: torch.Tensor, scale: int) -> torch.Tensor:
    """`sampled`'s maths: the Gaussian (reflect-padded), then bilinear (no antialiasing, align_corners=False) at
    each cell's centre, HR coordinate s·i + (s−1)/2. Both are linear, so they fold into one separable kernel
    evaluated only where it is sampled, as strided slices: blurring every HR pixel first made this the loader's
    costliest step at 480² crops (26 ms a crop, as long as three PNG decodes; now under 2). Equal to blurring then
    resampling up to float rounding (tested)."""
    taps = gaussian_taps(SAMPLED_SIGMA)
    radius, (h, w) = taps.numel() // 2, batch.shape[-2:]
    first = (scale - 1) // 2  # the upper of the two HR pixels bilinear mixes (equal weights when s is even)
    kernel = ((F.pad(taps, (0, 1)) + F.pad(taps, (1, 0))) / 2 if scale % 2 == 0 else taps).tolist()
    padded = F.pad(batch, (radius, radius, radius, radius), mode="reflect")
    rows_end, cols_end = first + scale * (h // scale - 1) + 1, first + scale * (w // scale - 1) + 1
    rows = padded[..., first:rows_end:scale, :] * kernel[0]
    for u, k in enumerate(kernel[1:], 1):  # in place: no temporary per tap
        rows.add_(padded[..., first + u : rows_end + u : scale, :], alpha=k)
    out = rows[..., first:cols_end:scale] * kernel[0]
    for u, k in enumerate(kernel[1:], 1):
        out.add_(rows[..., first + u : cols_end + u : scale], alpha=k)
    return out


def list_images(root: str | Path) -> list[Path]:
    """All image files under `root`, recursively, in a stable (sorted) order."""
    root = Path(root)
    if not root.is_dir():
        raise InputNotFound(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
