"""The SR network as a .safetensors file: its weights, and in the file's metadata what rebuilds it (registry name,
arguments, upscale, the value range it was trained in), so `cyclesr upscale`/`eval` and anyone with the
`safetensors` library read it without unpickling anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..errors import BadInput

FORMAT = "cyclesr-sr-safetensors/1"


def write_safetensors(
    state_dict: dict[str, torch.Tensor], name: str, args: dict[str, Any], upscale: int, value_range, path: Path
) -> Path:
    from safetensors.torch import save

    metadata = {
        "format": FORMAT,
        "name": name,
        "args": json.dumps(args, sort_keys=True),
        "upscale": str(upscale),
        "value_range": json.dumps([float(v) for v in value_range]),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    blob = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(blob))


def read_safetensors(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], tuple[float, float]]:
    """(registry name, arguments, state dict, value range) of a file `write_safetensors` wrote; a damaged or
    foreign file is one BadInput line."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has keys(), no iteration
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
        low, high = json.loads(metadata["value_range"])
        return metadata["name"], json.loads(metadata["args"]), state, (float(low), float(high))
    except Exception as err:  # noqa: BLE001 - any header, JSON or tensor error: not one of our files
        raise BadInput(
            f"{path} is not an SR network exported by `cyclesr export --format safetensors` ({err}); re-export it"
        ) from None
