"""Inference with a trained SR network: tiled ×scale upscaling, exporting/loading the SR network alone, and the
`cyclesr upscale` / `cyclesr export` sub-commands.

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

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .data.images import list_images, load_rgb, save_rgb, uint8_to_model

EXPORT_FORMAT = "cyclesr-sr-export/1"


# ---------------------------------------------------------------------------------------------------------- helpers


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside DDP / DeepSpeed (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(getattr(net, "_orig_mod", None), nn.Module):
            net = net._orig_mod
        elif isinstance(getattr(net, "module", None), nn.Module):
            net = net.module
        else:
            return net


def net_upscale(net: nn.Module) -> int:
    scale = getattr(unwrap(net), "upscale", None)
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"{type(unwrap(net)).__name__} has no integer `.upscale` attribute; is it an SR network?")
    return scale


def _net_device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in net.parameters():
        return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put `net` in eval mode for the block and restore its previous train/eval state afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


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
    tile: int | None = 128,
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
    tile: int | None = 128,
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


# ------------------------------------------------------------------------------------------------- export / load


def _plain(value: Any, where: str) -> Any:
    """Check that `value` is made of types torch.load(weights_only=True) accepts (and JSON-like)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise TypeError(f"{where}: {type(value).__name__} is not a plain type (None/bool/int/float/str/list/dict)")


def export_sr(net: nn.Module, name: str, args: dict[str, Any] | None, path: str | Path) -> Path:
    """Write the SR network alone: {format, name, args, upscale, state_dict}, plain types + CPU tensors.

    `name`/`args` are its `SR_NETS` registry entry (`SR_NETS.build(name, args)` must rebuild it). Loadable with
    `torch.load(path, weights_only=True)`; written atomically.
    """
    plain = unwrap(net)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in plain.state_dict().items()}
    payload = {
        "format": EXPORT_FORMAT,
        "name": str(name),
        "args": _plain(dict(args or {}), "export_sr args"),
        "upscale": net_upscale(plain),
        "state_dict": state,
    }
    atomic_write(path, lambda f: torch.save(payload, f))
    return Path(path)


def read_sr_source(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(registry name, args, state_dict) of an exported SR file or a training checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        from .engine.checkpoint import read_network_state  # lazy: the engine pulls in the training stack

        name, args, state = read_network_state(path, "sr")
        return name, dict(args or {}), state
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{path} is not an exported SR network (format {EXPORT_FORMAT!r}); "
            "pass a training checkpoint directory (OUT/checkpoints/step-XXXXXXXX) or a file from `cyclesr export`"
        )
    return payload["name"], dict(payload["args"]), payload["state_dict"]


def build_sr(name: str, args: dict[str, Any], state_dict: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    from .models import SR_NETS

    net = SR_NETS.build(name, args)
    net.load_state_dict(state_dict, strict=True)
    return net.to(device).eval()


def load_sr(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The SR network from an exported file or a training checkpoint directory, on `device`, in eval mode."""
    name, args, state = read_sr_source(path)
    net = build_sr(name, args, state, device=str(device))
    net.requires_grad_(False)
    return net


# -------------------------------------------------------------------------------------------------------- CLI


def _collect_inputs(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(list_images(p))
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    if not paths:
        raise FileNotFoundError(f"no images found in {' '.join(items)}")
    return paths


def add_upscale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="exported SR file or training checkpoint directory")
    parser.add_argument("--out", required=True, help="output folder; writes <stem>.png per input")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="input images (or folders of images)")
    parser.add_argument("--tile", type=int, default=128, help="tile size in LR pixels; 0 = whole image at once")
    parser.add_argument("--overlap", type=int, default=16, help="LR pixels of context around each tile")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def run_upscale(args: argparse.Namespace) -> int:
    try:
        inputs = _collect_inputs(args.images)
        out_dir = Path(args.out)
        targets = [out_dir / f"{p.stem}.png" for p in inputs]
        seen: dict[Path, Path] = {}
        for src, dst in zip(inputs, targets, strict=True):
            if dst in seen:
                raise ValueError(f"{src} and {seen[dst]} would both be written to {dst}")
            if dst.resolve() == src.resolve():
                raise ValueError(f"refusing to overwrite the input {src}; choose another --out")
            seen[dst] = src
        net = load_sr(args.checkpoint, device=args.device)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"cyclesr upscale: error: {err}", file=sys.stderr)
        return 2
    scale = net_upscale(net)
    for src, dst in zip(inputs, targets, strict=True):
        lr = load_rgb(src)
        sr = upscale_image(net, lr, tile=args.tile, overlap=args.overlap, device=args.device)
        save_rgb(sr, dst)
        print(f"{src} ({lr.shape[1]}x{lr.shape[0]}) -> {dst} ({sr.shape[1]}x{sr.shape[0]}, x{scale})")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint directory (or an exported file)")
    parser.add_argument("--out", required=True, help="file to write (e.g. sr.pt)")


def run_export(args: argparse.Namespace) -> int:
    try:
        name, net_args, state = read_sr_source(args.checkpoint)
        net = build_sr(name, net_args, state)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"cyclesr export: error: {err}", file=sys.stderr)
        return 2
    path = export_sr(net, name, net_args, args.out)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"exported {name} {net_args} (x{net_upscale(net)}, {n_params / 1e6:.2f}M params) -> {path}")
    return 0
