"""Backends: how the networks and optimizers are wrapped (DDP by default, DeepSpeed ZeRO-1/2 when launched with a
DeepSpeed accelerate config) behind one `Backend` surface."""

from __future__ import annotations

import torch
from torch import nn

from ...config import Config
from .base import Backend, OptimizerOps


def prepare_backend(
    nets: nn.ModuleDict,
    optimizers: dict[str, torch.optim.Optimizer],
    groups: dict[str, tuple[str, ...]],
    config: Config,
) -> Backend:
    """DeepSpeed when the process was launched with a DeepSpeed accelerate config, else DDP."""
    from .deepspeed.settings import deepspeed_requested

    if deepspeed_requested():
        from .deepspeed import DeepSpeedBackend

        return DeepSpeedBackend(nets, optimizers, groups, config)
    from .ddp import DDPBackend

    return DDPBackend(nets, optimizers, groups, config)


__all__ = ["Backend", "OptimizerOps", "prepare_backend"]
