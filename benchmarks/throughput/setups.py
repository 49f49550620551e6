"""The configs benchmarked and the starting point every variant shares: shapes, device, initial weights."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from cyclesr_dist.config import Config, load_config
from cyclesr_dist.cyclesr import Stage, build_networks, build_optimizers
from cyclesr_dist.testing import random_batch, tiny_config

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "benchmarks" / "train_throughput.py"  # re-run as a fresh child process for peak memory
NETS = ("gen_clean_to_real", "gen_real_to_clean", "disc_clean", "disc_real", "sr")
# tiny: compute is negligible, so the step time is mostly per-step Python/dispatch work and ours − bare there is
# the absolute overhead of CycleSR + OptimizerOps (+ the trainer's per-step work).
# reference: configs/cyclesr.yaml's schedule, sizes and precision with the reference's networks (the registered
# classes' defaults; the SR net without BatchNorm, so that batched calls apply) and full-band cycle/identity L1s —
# the maths the bare loop and the reference structure restate, and what BENCHMARKS.md's step tables measured.
REFERENCE_NETWORKS = [
    "model.generator={name: resnet}",
    "model.discriminator={name: patchgan}",
    "model.sr={name: vdsr_lr, args: {norm: none}}",
    "loss.content_low_pass=0",
]
CONFIGS: dict[str, tuple[Path, list[str]] | None] = {
    "tiny": None,
    # demo.yaml's `jpeg_quality: auto` and `input_blur: auto` are measured from data at train time; here what they
    # measure on the demo's photos (the range demo.yaml carried when the step tables were made; no blur)
    "demo": (
        ROOT / "configs" / "demo.yaml",
        ["model.generator.args.jpeg_quality=[70, 84]", "model.generator.args.input_blur=0"],
    ),
    "reference": (ROOT / "configs" / "cyclesr.yaml", REFERENCE_NETWORKS),
    # configs/cyclesr.yaml itself, its own full-resolution networks; its `auto` stages at what they measure on the
    # quality suite's blur operator (a JPEG range and a blur, so that both stages are in the step)
    "production": (
        ROOT / "configs" / "cyclesr.yaml",
        ["model.generator.args.jpeg_quality=[85, 94]", "model.generator.args.input_blur=0.48"],
    ),
}
STAGES = {"translation": Stage.TRANSLATION, "joint": Stage.JOINT}


def named_config(name: str) -> Config:
    source = CONFIGS[name]
    return load_config(*source) if source else tiny_config()


def config_source(name: str) -> str:
    source = CONFIGS[name]
    if source is None:
        return "cyclesr_dist.testing.tiny_config"
    path, overrides = source
    return " ".join([str(path.relative_to(ROOT)), *overrides])


@dataclasses.dataclass
class Setup:
    """Everything a variant needs: the config, shapes, device, initial weights and precision."""

    name: str
    config: Config
    lr_size: int
    batch_size: int
    device: torch.device
    base_bf16: bool
    init_state: dict[str, dict[str, torch.Tensor]]

    def batch(self, channels_last: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
        b = random_batch(self.batch_size, self.lr_size, self.config.data.scale, seed)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return {k: v.to(self.device).contiguous(memory_format=fmt) for k, v in b.items()}


class Built:
    """A variant ready to step: `step()` runs one training step; `nets` are the raw (unwrapped) networks."""

    def __init__(self, step: Callable[[], None], nets: torch.nn.ModuleDict, cleanup: Callable[[], None] | None = None):
        self.step = step
        self.nets = nets
        self.cleanup = cleanup or (lambda: None)


def make_setup(name: str, args: argparse.Namespace, device: torch.device) -> Setup:
    config = named_config(name)
    on_cpu = device.type == "cpu"
    if name == "tiny":
        lr_size, batch_size = 16, 2  # random_batch's defaults
    elif name == "demo":
        lr_size = args.demo_lr or config.data.hr_patch // config.data.scale
        batch_size = args.demo_batch or config.data.batch_size
    else:  # the reference networks are big: small patch and batch on CPU unless asked otherwise
        lr_size = args.ref_lr or (32 if on_cpu else config.data.hr_patch // config.data.scale)
        batch_size = args.ref_batch or (2 if on_cpu else config.data.batch_size)
    torch.manual_seed(0)
    nets = build_networks(config.model)
    init_state = {n: {k: v.clone() for k, v in nets[n].state_dict().items()} for n in NETS}
    return Setup(name, config, lr_size, batch_size, device, args.precision == "bf16", init_state)


def fresh_networks(setup: Setup, channels_last: bool) -> torch.nn.ModuleDict:
    nets = build_networks(setup.config.model)
    for n in NETS:
        nets[n].load_state_dict(setup.init_state[n])
    nets = nets.to(setup.device)
    if channels_last:
        nets = nets.to(memory_format=torch.channels_last)
    return nets


def make_optimizers(nets: torch.nn.ModuleDict, config: Config, adam: str) -> dict[str, torch.optim.Optimizer]:
    """`build_optimizers` with `optim.foreach` / `optim.fused` set for the variant."""
    optim = dataclasses.replace(config.optim, foreach=adam == "foreach", fused=adam == "fused")
    return build_optimizers(nets, optim)


def autocast_ctx(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
