"""The two ways the networks and optimizers are wrapped: Accelerate DDP (default) or DeepSpeed ZeRO-1/2.

Both give the trainer the same small surface: the wrapped networks, the per-group optimizers, the `StepOps`
for the joint step, and how a checkpoint holds their state.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from torch import nn

from ..config import Config
from ..cyclesr import StepOps, build_optimizers, network_groups
from .checkpoint import Checkpoint, load_group
from .ops import OptimizerOps
from .tracking import wandb_mode


@dataclass
class Backend:
    accelerator: Accelerator
    nets: nn.ModuleDict  # the five networks, wrapped
    optimizers: dict[str, torch.optim.Optimizer]  # group -> optimizer whose param_groups' "lr" the trainer sets
    ops: StepOps
    unwrap: Callable[[nn.Module], nn.Module]
    autocast: Callable[[], contextlib.AbstractContextManager]
    # Checkpoint hooks: what goes into group-<G>.pt, what every rank writes into the step directory besides,
    # and how to restore from a checkpoint.
    group_states: Callable[[], dict[str, dict[str, Any]]]
    save_sharded: Callable[[Path], Any] | None
    load: Callable[[Checkpoint], None]


def build_accelerator(config: Config, **kwargs: Any) -> Accelerator:
    handlers = []
    on_cpu = not torch.cuda.is_available()
    if on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Without gloo Accelerate forms no multi-process world on CPU (every process believes it is rank 0 of 1);
        # without cpu=True it forms one but reports DistributedType.NO and `prepare` wraps nothing in DDP.
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    return Accelerator(
        cpu=on_cpu,
        mixed_precision=config.train.mixed_precision,
        kwargs_handlers=handlers,
        step_scheduler_with_optimizer=False,
        **kwargs,
    )


def _tracker_kwargs(config: Config) -> dict[str, Any]:
    return {"log_with": "wandb" if wandb_mode(config.wandb) != "disabled" else None}


def prepare_ddp(nets: nn.ModuleDict, config: Config) -> Backend:
    """Each network its own DDP (when there are several processes); one Adam per group."""
    accelerator = build_accelerator(config, **_tracker_kwargs(config))
    optimizers = build_optimizers(nets, config.optim)
    names = list(nets.keys())
    prepared = accelerator.prepare(*[nets[n] for n in names], *optimizers.values())
    wrapped = nn.ModuleDict(dict(zip(names, prepared[: len(names)], strict=True)))
    optimizers = dict(zip(optimizers.keys(), prepared[len(names) :], strict=True))
    if config.train.compile:
        for name in names:
            wrapped[name] = torch.compile(wrapped[name])
    unwrap = accelerator.unwrap_model
    groups = network_groups(config.optim)

    def group_states() -> dict[str, dict[str, Any]]:
        return {
            g.name: {
                "nets": {n: unwrap(wrapped[n]).state_dict() for n in g.networks},
                "optimizer": optimizers[g.name].state_dict(),
            }
            for g in groups
        }

    def load(checkpoint: Checkpoint) -> None:
        for g in groups:
            state = load_group(checkpoint, g.name)
            for n in g.networks:
                unwrap(wrapped[n]).load_state_dict(state["nets"][n])
            optimizers[g.name].load_state_dict(state["optimizer"])

    ops = OptimizerOps(optimizers, config.optim.grad_clip, backward=accelerator.backward, unwrap=unwrap)
    return Backend(accelerator, wrapped, optimizers, ops, unwrap, accelerator.autocast, group_states, None, load)


def prepare_backend(nets: nn.ModuleDict, config: Config) -> Backend:
    """DeepSpeed when launched with a DeepSpeed accelerate config (ACCELERATE_USE_DEEPSPEED=true), else DDP."""
    from .deepspeed_backend import deepspeed_requested, prepare_deepspeed

    if not deepspeed_requested():
        return prepare_ddp(nets, config)
    ds = prepare_deepspeed(nets, config, _tracker_kwargs(config))
    # ZeRO-1/2 keep whole parameters on every rank: group-<G>.pt gets the full weights (for export/eval);
    # the engines write their sharded optimizer state into the step directory themselves.
    return Backend(
        ds.accelerator,
        ds.nets,
        ds.optimizers,
        ds.ops,
        ds.unwrap,
        ds.autocast,
        ds.network_state_dicts,
        ds.save,
        lambda checkpoint: ds.load(checkpoint.path),
    )
