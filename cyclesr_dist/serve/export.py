"""The SR network alone: exporting it from a checkpoint to one file, and loading it back from either."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..atomic import atomic_write
from ..checkpoint_format import find_checkpoint, network_state
from ..data.images import DATA_RANGE, from_value_range, to_value_range
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


class InDataRange(nn.Module):
    """A network trained on images in `value_range` (`data.value_range`), called on images in the data
    convention [-1, 1]: input and output mapped at its boundary. Shows the wrapped net's `upscale`/`multiple`."""

    def __init__(self, net: nn.Module, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.net, self.value_range = net, value_range
        for attr in ("upscale", "multiple"):
            if hasattr(net, attr):
                setattr(self, attr, getattr(net, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_value_range(self.net(to_value_range(x, self.value_range)), self.value_range)


def in_data_range(net: nn.Module, value_range: tuple[float, float]) -> nn.Module:
    """`net` itself when it was trained in [-1, 1]."""
    return net if tuple(value_range) == DATA_RANGE else InDataRange(net, value_range)


def recorded_range(entry: dict[str, Any]) -> tuple[float, float]:
    """The range a checkpoint's network entry or an export says its net was trained in; [-1, 1] when it says
    nothing (files from before the option)."""
    recorded = entry.get("value_range") or DATA_RANGE
    try:
        low, high = (float(v) for v in recorded)
    except (TypeError, ValueError):
        raise BadInput(
            f"the network's recorded value_range {recorded!r} is not [low, high]; the file is damaged: re-export it "
            "from its training checkpoint (`cyclesr export`)"
        ) from None
    return low, high


def export_sr(
    net: nn.Module,
    name: str,
    args: dict[str, Any] | None,
    path: str | Path,
    value_range: tuple[float, float] | list[float] = DATA_RANGE,
) -> Path:
    """Write the SR network alone: {format, name, args, upscale, value_range, state_dict}, plain types + CPU
    tensors.

    `name`/`args` are its `SR_NETS` registry entry (`SR_NETS.build(name, args)` must rebuild it); `value_range` the
    range it was trained in. Loadable with `torch.load(path, weights_only=True)`; written atomically.
    """
    plain = unwrap(net)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in plain.state_dict().items()}
    payload = {
        "format": EXPORT_FORMAT,
        "name": str(name),
        "args": _plain(dict(args or {}), "export_sr args"),
        "upscale": net_upscale(plain),
        "value_range": [float(v) for v in value_range],
        "state_dict": state,
    }
    atomic_write(path, lambda f: torch.save(payload, f))
    return Path(path)


class SRSource(NamedTuple):
    name: str  # SR_NETS registry name
    args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    value_range: tuple[float, float]  # the range it was trained in ([-1, 1] for files from before the option)


def read_sr_source(path: str | Path) -> SRSource:
    """The SR network of an exported SR file (torch or safetensors) or a training checkpoint (a step,
    `checkpoints/` or run folder; only the exported network's group file is read)."""
    path = Path(path)
    if path.is_dir():
        entry, state = network_state(find_checkpoint(path))
        return SRSource(entry["name"], dict(entry["args"] or {}), state, recorded_range(entry))
    if not path.is_file():
        raise InputNotFound(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from .safetensors_format import read_safetensors

        return SRSource(*read_safetensors(path))
    if path.suffix == ".onnx":
        raise BadInput(
            f"{path} is an ONNX graph, which holds no torch weights to export again: export from the "
            "training checkpoint or the .pt/.safetensors file"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling / zip error: not one of our files
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise BadInput(
            f"{path} is not an exported SR network (format {EXPORT_FORMAT!r}); "
            "pass a training checkpoint directory (OUT/checkpoints/step-XXXXXXXX) or a file from `cyclesr export`"
        )
    return SRSource(payload["name"], dict(payload["args"]), payload["state_dict"], recorded_range(payload))


def build_sr(name: str, args: dict[str, Any], state_dict: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    net = build_network("sr", name, args)
    net.load_state_dict(state_dict, strict=True)
    return net.to(device).eval()


def load_sr(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The SR network from an exported file or a training checkpoint directory, on `device`, in eval mode, taking
    and giving images in [-1, 1] whatever range it was trained in."""
    if Path(path).suffix == ".onnx" and Path(path).is_file():
        from .onnx_format import OnnxSR

        if torch.device(device).type != "cpu":
            raise BadInput(f"{path}: an ONNX network runs on the CPU here (ONNX Runtime); pass --device cpu")
        return OnnxSR(path)
    source = read_sr_source(path)
    net = build_sr(source.name, source.args, source.state_dict, device=str(device))
    net.requires_grad_(False)
    return in_data_range(net, source.value_range)


# `cyclesr export --format`: the file suffix of each format
FORMATS = {"torch": ".pt", "safetensors": ".safetensors", "onnx": ".onnx"}


def export_formats(source: SRSource, out: str | Path, formats: list[str]) -> list[Path]:
    """Write the SR network of `source` in each of `formats` (keys of FORMATS), at `out` with the format's suffix
    (sr.pt -> sr.safetensors, sr.onnx; the torch file keeps any other suffix `out` has, e.g. sr.pth). Returns the
    paths written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"unknown export format(s) {unknown or formats}; valid: {', '.join(FORMATS)}")
    net = build_sr(source.name, source.args, source.state_dict)
    upscale = net_upscale(net)
    written = []
    for fmt in formats:
        path = Path(out).with_suffix(FORMATS[fmt])
        if fmt == "torch" and Path(out).suffix not in ("", *FORMATS.values()):
            path = Path(out)
        if fmt == "torch":
            written.append(export_sr(net, source.name, source.args, path, source.value_range))
        elif fmt == "safetensors":
            from .safetensors_format import write_safetensors

            written.append(
                write_safetensors(net.state_dict(), source.name, source.args, upscale, source.value_range, path)
            )
        else:
            from .onnx_format import write_onnx

            written.append(write_onnx(net, source.name, source.args, upscale, source.value_range, path))
    return written
