"""The SR network as an ONNX file, for ONNX Runtime, TensorRT, OpenVINO or ncnn, and `OnnxSR`, which runs one in
ONNX Runtime behind the interface `serve.tiling` expects of a torch SR network.

The graph takes float32 RGB, NCHW, values in [0, 1] (8-bit / 255), any batch, height and width, and returns the
×s image in the same convention, unclamped: the mapping to the range the network was trained in (`data.value_range`)
is inside the graph, so a user needs no knowledge of it. What rebuilds the torch network (registry name, arguments,
upscale, value range) is kept in the model's metadata."""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import BadInput
from .export import in_data_range

FORMAT = "cyclesr-sr-onnx/1"
OPSET = 18


def _need(module: str) -> Any:
    """Import an optional package of the `export` extra, or stop with one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BadInput(f"ONNX needs the {module} package: pip install 'cyclesr-dist[export]'") from None


class _UnitRange(nn.Module):
    """[0, 1] in and out around a network that takes and gives [-1, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x * 2 - 1) + 1) / 2


def write_onnx(net: nn.Module, name: str, args: dict[str, Any], upscale: int, value_range, path: Path) -> Path:
    """Export `net` (trained in `value_range`) with dynamic batch, height and width at opset OPSET."""
    onnx = _need("onnx")
    _need("onnxscript")
    model = _UnitRange(in_data_range(net, tuple(value_range))).eval()
    example = torch.rand(1, 3, 24, 24)
    dim = torch.export.Dim
    size = {0: dim("batch", min=1), 2: dim("height", min=4), 3: dim("width", min=4)}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter's notes on packages (torchvision) this network does not use
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_shapes={"x": size},
            opset_version=OPSET,
            verbose=False,
        )
    quiet.setLevel(level)
    proto = program.model_proto
    for key, value in {
        "format": FORMAT,
        "name": name,
        "args": json.dumps(args, sort_keys=True),
        "upscale": str(upscale),
        "value_range": json.dumps([float(v) for v in value_range]),
        "io": "float32 RGB NCHW in [0, 1] (8-bit / 255), output the same, unclamped",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return atomic_write(path, lambda f: f.write(proto.SerializeToString()))


class OnnxSR(nn.Module):
    """An exported ONNX SR network run in ONNX Runtime (CPU), called like the torch network: NCHW in [-1, 1] in,
    the ×`upscale` image in [-1, 1] out. Its `name`, `args` and `value_range` come from the file's metadata."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        ort = _need("onnxruntime")
        self.path = str(path)
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            self.upscale = int(meta["upscale"])
            self.name, self.args = meta["name"], json.loads(meta["args"])
            self.value_range = tuple(float(v) for v in json.loads(meta["value_range"]))
        except Exception as err:  # noqa: BLE001 - protobuf, runtime or metadata error: not one of our files
            raise BadInput(
                f"{path} is not an SR network exported by `cyclesr export --format onnx` ({str(err)[:200]}); "
                "re-export it"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = ((x.detach().float().cpu() + 1) / 2).numpy()
        out = self.session.run(None, {"lr": np.ascontiguousarray(unit)})[0]
        return torch.from_numpy(out * 2 - 1).to(x.device)
