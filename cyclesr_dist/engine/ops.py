"""`StepOps` implementations: how the joint step backwards, clips and steps each optimizer group."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class OptimizerOps:
    """Per-group clip + step + zero_grad around a backward function (plain `Tensor.backward` by default).

    Works for a bare loop and for Accelerate's DDP path (pass `accelerator.backward`): DDP has all-reduced the
    gradients by the time `step` runs, so clipping with torch's own `clip_grad_norm_` is exact and does not
    unscale every optimizer the way `accelerator.clip_grad_norm_` does.
    """

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        grad_clip: float,
        backward: Callable[[torch.Tensor], None] | None = None,
        unwrap: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self._backward = backward or (lambda loss: loss.backward())
        self._unwrap = unwrap
        self.grad_norms: dict[str, torch.Tensor] = {}

    def backward(self, loss: torch.Tensor) -> None:
        self._backward(loss)

    def step(self, group: str) -> None:
        optimizer = self.optimizers[group]
        if self.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.grad_norms[group] = torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def frozen(self, net: nn.Module) -> nn.Module:
        # Calling a DDP wrapper with frozen parameters is fine; DeepSpeed engines need the raw module.
        return self._unwrap(net) if self._unwrap else net


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], lrs: dict[str, float]) -> None:
    """The schedule is a pure function of the epoch (see `NetworkGroup.lr`), so no LR scheduler object is
    prepared: Accelerate's prepared schedulers step once per process per optimizer step (stack-facts, finding 5),
    and a derived LR needs no checkpointing."""
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = lrs[name]
