"""Conv/matmul FLOPs of one step, counted on the meta device (no memory, no compute)."""

from __future__ import annotations

import torch

from cyclesr_dist.config import Config
from cyclesr_dist.cyclesr import CycleSR, Stage, build_networks, network_groups
from cyclesr_dist.engine.backends.base import OptimizerOps
from cyclesr_dist.testing import reference_optimize_parameters

from .setups import NETS


class _NoOptimizer:
    """Stands in for Adam when counting FLOPs on the meta device (the optimizer does no conv/matmul)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.param_groups = [{"params": params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        pass


def meta_step_inputs(
    config: Config, lr_size: int, batch_size: int
) -> tuple[torch.nn.ModuleDict, dict[str, _NoOptimizer], dict[str, torch.Tensor]]:
    """Networks, stand-in optimizers per group and a batch, all on the meta device."""
    with torch.device("meta"):
        nets = build_networks(config.model)
    opts = {
        g.name: _NoOptimizer([p for n in g.networks for p in nets[n].parameters()])
        for g in network_groups(config.optim)
    }
    s = config.data.scale
    batch = {
        "hr": torch.empty(batch_size, 3, lr_size * s, lr_size * s, device="meta"),
        "clean_lr": torch.empty(batch_size, 3, lr_size, lr_size, device="meta"),
        "real_lr": torch.empty(batch_size, 3, lr_size, lr_size, device="meta"),
    }
    return nets, opts, batch


def count_step_flops(config: Config, lr_size: int, batch_size: int, stage: Stage, structure: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    nets, opts, batch = meta_step_inputs(config, lr_size, batch_size)
    model = CycleSR(nets, config.loss, pool_seed=0)
    with FlopCounterMode(display=False) as counter:
        if structure == "reference":
            reference_optimize_parameters(model, batch, stage, opts, 0.0)
        else:
            model.optimize_parameters(batch, stage, OptimizerOps(opts, 0.0))
    return counter.get_total_flops()


def count_forward_flops(config: Config, lr_size: int) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        nets = build_networks(config.model)
    out = {}
    for n in NETS:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            nets[n](torch.empty(1, 3, lr_size, lr_size, device="meta"))
        out[n] = counter.get_total_flops()
    return out
