"""Tiled ×scale upscaling of images of any size with an SR network.

Tiling: the LR image is cut into `tile`×`tile` cores; each core is run with `overlap` extra LR pixels of real
context on every side (fewer at the image border, where the untiled run sees the same zero padding), and only
the core's ×scale output is kept. Every output pixel therefore sees the same inputs as in an untiled run as long
as `overlap` >= the network's receptive-field radius in LR pixels, and the tiled result then equals the untiled
one up to float rounding (convolution algorithms differ with input size). Peak memory is that of one
(tile + 2·overlap)² tile plus the uint8 output. Networks with image-global statistics (instance norm) are not
exact under tiling.

Receptive-field radius (LR pixels) of `vdsr_lr`: nb + 2 convs at LR, then ~1 more for the upsampler/tail, i.e.
about nb + 4 (24 for the default nb=20; the default overlap of 16 is then approximate, not exact, though the
far-off weights contribute little). `srresnet`: about 2·nb + 8.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..data.images import uint8_to_model
from ..torch_utils import eval_mode, unwrap

# 256 LR px: on the 2-core CPU the fastest tile for both SR nets, at least as fast as the whole image at 512² LR
# (smaller working set) and 1.2-1.3× faster than 128 (less overlap recomputed); memory stays bounded
# (BENCHMARKS.md, "Inference speed").
DEFAULT_TILE = 256


def net_upscale(net: nn.Module) -> int:
    scale = getattr(unwrap(net), "upscale", None)
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"{type(unwrap(net)).__name__} has no integer `.upscale` attribute; is it an SR network?")
    return scale


def _net_device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in net.parameters():
        return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32


def resolve_device(net: nn.Module, device: str | torch.device | None) -> torch.device:
    net_device, _ = _net_device_dtype(net)
    if device is None:
        return net_device
    device = torch.device(device)
    # "cuda" and "cuda:0" name the same device; compare types and (when both given) indices.
    if device.type != net_device.type or (
        device.index is not None and net_device.index is not None and device.index != net_device.index
    ):
        raise ValueError(f"the network is on {net_device} but device={device} was requested; move it first")
    return net_device


def _tiles(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def _sr_tiles(
    net: nn.Module, lr: torch.Tensor, tile: int | None, overlap: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (y0, x0, sr_core) in LR coordinates of each core; `lr` is 1x3xHxW on the net's device and dtype."""
    scale = net_upscale(net)
    _, _, h, w = lr.shape
    if not tile or tile <= 0 or (tile >= h and tile >= w):
        yield 0, 0, net(lr)
        return
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    for y0 in _tiles(h, tile):
        for x0 in _tiles(w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, h), min(x1 + overlap, w)
            out = net(lr[:, :, py0:py1, px0:px1])
            cy, cx = (y0 - py0) * scale, (x0 - px0) * scale
            yield y0, x0, out[:, :, cy : cy + (y1 - y0) * scale, cx : cx + (x1 - x0) * scale]


def _prepare_input(net: nn.Module, lr_uint8: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
    if lr_uint8.dtype != np.uint8 or lr_uint8.ndim != 3 or lr_uint8.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {lr_uint8.dtype} array of shape {lr_uint8.shape}")
    dev = resolve_device(net, device)
    _, dtype = _net_device_dtype(net)
    if not lr_uint8.flags.writeable:  # torch.from_numpy warns on read-only arrays (e.g. np.asarray(PIL image))
        lr_uint8 = lr_uint8.copy()
    return uint8_to_model(lr_uint8).unsqueeze(0).to(device=dev, dtype=dtype)


@torch.inference_mode()
def upscale_tensor(
    sr_net: nn.Module,
    lr_uint8: np.ndarray,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int = 16,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Like `upscale_image` but returns the float32 3x(sH)x(sW) output in [-1, 1] (unclamped, unrounded), on CPU."""
    scale = net_upscale(sr_net)
    lr = _prepare_input(sr_net, lr_uint8, device)
    h, w = lr.shape[-2:]
    out = torch.empty(3, h * scale, w * scale, dtype=torch.float32)
    with eval_mode(sr_net):
        for y0, x0, core in _sr_tiles(sr_net, lr, tile, overlap):
            ch, cw = core.shape[-2:]
            out[:, y0 * scale : y0 * scale + ch, x0 * scale : x0 * scale + cw] = core[0].float().cpu()
    return out


@torch.inference_mode()
def upscale_image(
    sr_net: nn.Module,
    lr_uint8: np.ndarray,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int = 16,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """×scale SR of an HxWx3 uint8 image of any size -> (scale·H)x(scale·W)x3 uint8.

    `tile` (LR pixels; None or 0 = one pass over the whole image) bounds memory; `overlap` LR pixels of context
    around every tile are computed and discarded (see the module docstring for when this is exact). `device`:
    where the network is (None = wherever its parameters are); the network is not moved. The network is run in
    eval mode and its train/eval state restored afterwards.
    """
    scale = net_upscale(sr_net)
    lr = _prepare_input(sr_net, lr_uint8, device)
    h, w = lr.shape[-2:]
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    with eval_mode(sr_net):
        for y0, x0, core in _sr_tiles(sr_net, lr, tile, overlap):
            ch, cw = core.shape[-2:]
            # Same rounding as data.images.model_to_uint8, done per tile so no full-size float image is held.
            q = core[0].float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu()
            out[y0 * scale : y0 * scale + ch, x0 * scale : x0 * scale + cw] = q.numpy()
    return out
