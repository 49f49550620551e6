"""The DeepSpeed engines: one per optimizer group, each prepared by its own Accelerator, and the members the joint
model calls."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .settings import DeepSpeedSettings, make_plugin


class GroupModule(nn.Module):
    """The networks of one optimizer group, as one module for one DeepSpeed engine."""

    def __init__(self, nets: dict[str, nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)

    def forward(self, member: str, *inputs: Any, **kwargs: Any) -> Any:
        return self.nets[member](*inputs, **kwargs)


class EngineMember(nn.Module):
    """One network of a group, as the joint model sees it.

    `forward` goes through the group's DeepSpeed engine (`engine(name, x)`), so DeepSpeed's output hooks run
    its backward prologue for every trainable use. `module` is the raw network (registered, so `parameters()`,
    `train()`/`eval()` and `state_dict()` reach it); use it for frozen and inference forwards. The engine is
    held outside the module tree, so its parameters are not registered twice.
    """

    def __init__(self, engine: nn.Module, name: str) -> None:
        super().__init__()
        self.name = name
        self.module = engine.module.nets[name]
        self._engine = (engine,)

    @property
    def engine(self) -> nn.Module:
        return self._engine[0]

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.engine(self.name, *inputs, **kwargs)


def build_engines(
    nets: nn.ModuleDict,
    groups: dict[str, tuple[str, ...]],
    optimizers: dict[str, torch.optim.Optimizer],
    settings: DeepSpeedSettings,
    accelerator_kwargs: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    """({group: Accelerator}, {group: DeepSpeedEngine}). The first Accelerator must carry every group's plugin
    (Accelerate allows one DeepSpeed model per Accelerator and keeps the plugins in the shared state);
    `select_deepspeed_plugin(group)` before each `prepare` picks that group's engine config."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state:
        raise RuntimeError(
            "an Accelerator already exists in this process; with DeepSpeed the backend must create the first one "
            "(it carries every engine's plugin)"
        )
    kwargs = dict(accelerator_kwargs)
    handlers = list(kwargs.pop("kwargs_handlers", []))
    kwargs.setdefault("step_scheduler_with_optimizer", False)
    plugins = {
        name: make_plugin(settings, sum(p.numel() for n in networks for p in nets[n].parameters()))
        for name, networks in groups.items()
    }
    accelerators: dict[str, Any] = {}
    engines: dict[str, nn.Module] = {}
    for index, (name, networks) in enumerate(groups.items()):
        if index == 0:
            accelerator = Accelerator(deepspeed_plugins=plugins, kwargs_handlers=handlers, **kwargs)
            if accelerator.distributed_type.name != "DEEPSPEED":
                raise RuntimeError(
                    f"Accelerate chose {accelerator.distributed_type.name}, not DEEPSPEED: ACCELERATE_USE_CPU=true "
                    "(or accelerate launch --cpu) disables DeepSpeed; launch on CPU without it"
                )
            if accelerator.num_processes != settings.world_size:
                raise RuntimeError(
                    f"Accelerate sees {accelerator.num_processes} processes but WORLD_SIZE={settings.world_size}"
                )
        else:
            accelerator = Accelerator()  # shares the AcceleratorState (and its plugins) of the first
        accelerator.state.select_deepspeed_plugin(name)
        engine, _ = accelerator.prepare(GroupModule({n: nets[n] for n in networks}), optimizers[name])
        accelerators[name], engines[name] = accelerator, engine
    first = next(iter(groups))
    accelerators[first].state.select_deepspeed_plugin(first)
    return accelerators, engines
