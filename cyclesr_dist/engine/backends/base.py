"""What every backend gives the trainer: the wrapped networks and their optimizers, the `StepOps` the joint
step calls, autocast, and the networks' and optimizers' state for checkpoints."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from torch import nn

from ...checkpoint_format import Checkpoint
from ...config import Config
from ...torch_utils import unwrap
from ..tracking import wandb_mode


class OptimizerOps:
    """Per-group clip + step + zero_grad around a backward function (plain `Tensor.backward` by default).

    Works for a bare loop and for DDP (pass `accelerator.backward`): DDP has all-reduced the gradients by the
    time `step` runs, so clipping with torch's own `clip_grad_norm_` is exact and does not unscale every optimizer
    the way `accelerator.clip_grad_norm_` does.
    """

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        grad_clip: float,
        backward: Callable[[torch.Tensor], None] | None = None,
        clip_sets: dict[str, list[list[nn.Parameter]]] | None = None,
    ) -> None:
        """`clip_sets`: group -> parameter sets each clipped on its own (default: the group's parameters as one)."""
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self.clip_sets = clip_sets or {}
        self._backward = backward or (lambda loss: loss.backward())
        self.grad_norms: dict[str, torch.Tensor] = {}

    def backward(self, loss: torch.Tensor) -> None:
        self._backward(loss)

    def step(self, group: str) -> None:
        optimizer = self.optimizers[group]
        if self.grad_clip > 0:
            sets = self.clip_sets.get(group) or [[p for g in optimizer.param_groups for p in g["params"]]]
            norms = [
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip, foreach=True)
                for params in sets
            ]
            # the group's norm before clipping (one set: that norm itself, no extra ops on the hot path)
            self.grad_norms[group] = norms[0] if len(norms) == 1 else torch.stack(norms).square().sum().sqrt()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def frozen(self, net: nn.Module) -> nn.Module:
        # The plain module: a frozen forward needs no gradient synchronisation (and a DeepSpeed engine forward
        # would run its backward hooks with no gradients).
        return unwrap(net)


def process_group_kwargs(config: Config, gloo: bool) -> InitProcessGroupKwargs:
    """The process group's settings: gloo where there is no GPU (`gloo`: the caller knows when that matters) and the
    collective timeout `dist.timeout_s`, after which a rank waiting for a dead or stalled peer raises."""
    timeout = timedelta(seconds=config.dist.timeout_s)
    if timeout == InitProcessGroupKwargs().timeout:
        # Accelerate passes on only the fields that differ from its defaults: a timeout equal to its default (600 s)
        # would be dropped, and gloo would wait torch's 30 minutes instead. A millisecond more goes through.
        timeout += timedelta(milliseconds=1)
    return InitProcessGroupKwargs(backend="gloo" if gloo else None, timeout=timeout)


def build_accelerator(config: Config, **kwargs: Any) -> Accelerator:
    on_cpu = not torch.cuda.is_available()
    # Without gloo Accelerate forms no multi-process world on CPU (every process believes it is rank 0 of 1);
    # without cpu=True it forms one but reports DistributedType.NO and `prepare` wraps nothing in DDP.
    gloo = on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1
    kwargs.setdefault("step_scheduler_with_optimizer", False)  # learning rates are set by the trainer
    return Accelerator(cpu=on_cpu, kwargs_handlers=[process_group_kwargs(config, gloo)], **kwargs)


def tracker_kwargs(config: Config) -> dict[str, Any]:
    return {"log_with": "wandb" if wandb_mode(config.wandb) != "disabled" else None}


class Backend(ABC):
    """One way of wrapping the networks. Subclasses set the attributes in their constructor."""

    accelerator: Accelerator
    nets: nn.ModuleDict  # wrapped, same keys as the spec's networks
    optimizers: dict[str, torch.optim.Optimizer]  # group -> optimizer whose param_groups' "lr" the trainer sets
    ops: OptimizerOps | Any  # the joint step's StepOps; has `grad_norms`
    groups: dict[str, tuple[str, ...]]  # optimizer group -> its networks

    @property
    def raw_nets(self) -> nn.ModuleDict:
        """The plain modules (same parameters), for inference, sample grids and validation."""
        return nn.ModuleDict({name: unwrap(net) for name, net in self.nets.items()})

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    def set_learning_rates(self, lrs: dict[str, float]) -> None:
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = lrs[name]

    @abstractmethod
    def group_states(self) -> dict[str, dict[str, Any]]:
        """{group: {"nets": {network: state_dict}, ...}}: what `group-<G>.pt` holds (full weights, so export and
        evaluation read one file)."""

    def save_sharded(self, step_dir: Path) -> None:
        """Collective, every rank: state the ranks write together into the step directory."""
        return None  # DDP: group-<G>.pt holds everything

    @abstractmethod
    def load(self, checkpoint: Checkpoint) -> None:
        """Restore networks and optimizers (collective where the backend saves collectively)."""
