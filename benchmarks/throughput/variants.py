"""The variants timed against each other, and how each is built from the shared `Setup`."""

from __future__ import annotations

import dataclasses

import torch

from cyclesr_dist.cyclesr import CycleSR, Stage
from cyclesr_dist.engine.backends.base import OptimizerOps
from cyclesr_dist.testing import reference_optimize_parameters

from .bare import make_bare_step
from .setups import NETS, Built, Setup, autocast_ctx, fresh_networks, make_optimizers


@dataclasses.dataclass(frozen=True)
class Variant:
    key: str
    structure: str  # bare | ours | batched | reference | trainer
    channels_last: bool = False
    adam: str = "foreach"  # foreach | forloop | fused
    amp_toggle: bool = False  # flip the base precision (fp32 <-> bf16 autocast)
    compile: str = ""  # torch.compile mode; "" = eager
    inplace_after_norm: bool = False  # activations after a norm in place, as the networks had them before


VARIANTS = {
    v.key: v
    for v in (
        Variant("bare", "bare"),
        Variant("ours", "ours"),
        Variant("reference", "reference"),
        Variant("trainer", "trainer"),
        Variant("channels_last", "ours", channels_last=True),
        Variant("forloop_adam", "ours", adam="forloop"),
        Variant("fused_adam", "ours", adam="fused"),
        Variant("amp", "ours", amp_toggle=True),
        Variant("compile", "ours", compile="default"),
        Variant("compile_max", "ours", compile="max-autotune-no-cudagraphs"),
        Variant("compile_graphs", "ours", compile="reduce-overhead"),  # CUDA graphs (GPU only)
        Variant("compile_cl", "ours", channels_last=True, compile="default"),
        Variant("compile_batched", "batched", compile="default"),
        Variant("batched", "batched"),
        Variant("batched_fused", "batched", adam="fused"),
        Variant("inplace_act", "ours", inplace_after_norm=True),
    )
}
# The tiny config measures overhead only: the switches that change compute are left out there.
TINY_VARIANTS = ["bare", "ours", "reference", "trainer", "batched"]
DEFAULT_VARIANTS = [
    "bare",
    "ours",
    "reference",
    "trainer",
    "channels_last",
    "forloop_adam",
    "fused_adam",
    "amp",
    "batched",
    "batched_fused",
]
MEMORY_VARIANTS = ["ours", "reference"]
LABELS = {
    "bare": "bare loop (same maths)",
    "ours": "ours (CycleSR + OptimizerOps)",
    "reference": "reference update structure",
    "trainer": "trainer step (Accelerate)",
    "channels_last": "ours + channels_last",
    "forloop_adam": "ours + for-loop Adam",
    "fused_adam": "ours + fused Adam",
    "compile": "ours + torch.compile",
    "compile_max": "ours + torch.compile max-autotune-no-cudagraphs",
    "compile_graphs": "ours + torch.compile reduce-overhead (CUDA graphs)",
    "compile_cl": "ours + channels_last + torch.compile",
    "compile_batched": "ours + batched calls + torch.compile",
    "batched": "ours + batched G/F/D calls",
    "batched_fused": "ours + batched calls + fused Adam",
    "inplace_act": "ours with in-place activations after the norms (before)",
}


def activations_in_place_after_norms(nets: torch.nn.Module) -> None:
    """The networks as they were: each ReLU / LeakyReLU that follows a norm works in place on the norm's output
    (a view, for InstanceNorm, so the backward copies its gradient). The same values."""
    norms = (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)
    for seq in nets.modules():
        if isinstance(seq, torch.nn.Sequential):
            for before, act in zip(seq, list(seq)[1:], strict=False):
                if isinstance(before, norms) and isinstance(act, torch.nn.ReLU | torch.nn.LeakyReLU):
                    act.inplace = True


def variant_label(v: Variant, base_bf16: bool) -> str:
    if v.key == "amp":
        return "ours + fp32" if base_bf16 else "ours + bf16 autocast"
    return LABELS[v.key]


def build_variant(v: Variant, setup: Setup, stage: Stage) -> Built:
    bf16 = setup.base_bf16 != v.amp_toggle
    if v.structure == "trainer":  # builds its own networks and optimizers, as the trainer does
        from .trainer_step import build_trainer_step

        return build_trainer_step(setup, stage, bf16)

    config = setup.config
    amp = autocast_ctx(setup.device, bf16)
    nets = fresh_networks(setup, v.channels_last)
    if v.inplace_after_norm:
        activations_in_place_after_norms(nets)
    optimizers = make_optimizers(nets, config, v.adam)
    batch = setup.batch(v.channels_last)
    clip = config.optim.grad_clip

    if v.structure == "bare":
        return Built(make_bare_step(nets, optimizers, config, batch, stage, amp), nets)

    if v.structure == "reference":
        model = CycleSR(nets, config.loss, pool_seed=0)

        def ref_step() -> None:
            with amp():
                reference_optimize_parameters(model, batch, stage, optimizers, clip)

        return Built(ref_step, nets)

    if v.compile:
        # As the trainer compiles (train.compile_mode): static shapes, so another config's or variant's shape adds
        # a graph instead of turning on automatic-dynamic shapes; enough cache entries for every variant.
        torch._dynamo.config.recompile_limit = 64
        called = torch.nn.ModuleDict({n: torch.compile(nets[n], mode=v.compile, dynamic=False) for n in NETS})
    else:
        called = nets
    model = CycleSR(called, config.loss, pool_seed=0, batched_calls=v.structure == "batched")
    ops = OptimizerOps(optimizers, clip)

    def ours_step() -> None:
        with amp():
            model.optimize_parameters(batch, stage, ops)

    return Built(ours_step, nets)
