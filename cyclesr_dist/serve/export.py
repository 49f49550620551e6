"""The SR network alone: exporting it from a checkpoint to one file, and loading it back from either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write
from ..checkpoint_format import find_checkpoint, network_state
from ..errors import BadInput, InputNotFound
from ..models import build_network
from ..torch_utils import unwrap
from .tiling import net_upscale

EXPORT_FORMAT = "cyclesr-sr-export/1"


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
    """(registry name, args, state_dict) of an exported SR file or a training checkpoint (a step, `checkpoints/`
    or run folder; only the exported network's group file is read)."""
    path = Path(path)
    if path.is_dir():
        entry, state = network_state(find_checkpoint(path))
        return entry["name"], dict(entry["args"] or {}), state
    if not path.is_file():
        raise InputNotFound(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling / zip error: not one of our files
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise BadInput(
            f"{path} is not an exported SR network (format {EXPORT_FORMAT!r}); "
            "pass a training checkpoint directory (OUT/checkpoints/step-XXXXXXXX) or a file from `cyclesr export`"
        )
    return payload["name"], dict(payload["args"]), payload["state_dict"]


def build_sr(name: str, args: dict[str, Any], state_dict: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    net = build_network("sr", name, args)
    net.load_state_dict(state_dict, strict=True)
    return net.to(device).eval()


def load_sr(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The SR network from an exported file or a training checkpoint directory, on `device`, in eval mode."""
    name, args, state = read_sr_source(path)
    net = build_sr(name, args, state, device=str(device))
    net.requires_grad_(False)
    return net
