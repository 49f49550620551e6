"""The default backend: each network its own DistributedDataParallel through Accelerate, one Adam per group."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ...checkpoint_format import Checkpoint, group_file, load_file
from ...config import Config
from ...torch_utils import unwrap
from .base import Backend, OptimizerOps, build_accelerator, tracker_kwargs


class DDPBackend(Backend):
    def __init__(
        self,
        nets: nn.ModuleDict,
        optimizers: dict[str, torch.optim.Optimizer],
        groups: dict[str, tuple[str, ...]],
        config: Config,
    ) -> None:
        self.accelerator = build_accelerator(
            config, mixed_precision=config.train.mixed_precision, **tracker_kwargs(config)
        )
        names = list(nets.keys())
        prepared = self.accelerator.prepare(*[nets[n] for n in names], *optimizers.values())
        self.nets = nn.ModuleDict(dict(zip(names, prepared[: len(names)], strict=True)))
        for net in self.nets.values():
            if isinstance(net, DistributedDataParallel):
                # No buffer broadcast before each forward: the buffers are constants (blur kernels, the JPEG
                # stage's matrices), equal on every rank, or BatchNorm running statistics, which only rank 0 reads
                # (validation, checkpoints). The broadcast writes them in place, which on torch 2.11 (2.12 guards
                # the version counters) breaks the backward of a net called twice in one step (G, the
                # discriminators); it is also one collective per forward (BENCHMARKS.md, "DDP broadcasts no
                # buffers"). Set on the wrapped nets, not as Accelerate's DDP argument, which torch 2.13 deprecates
                # with a warning per network.
                net.broadcast_buffers = False
        self.optimizers = dict(zip(optimizers.keys(), prepared[len(names) :], strict=True))
        if config.train.compile:
            # Fixed input shapes per run (validation uses the plain modules): dynamic=False compiles each once, where
            # automatic-dynamic shapes would recompile on a second shape and Inductor can fail on the result.
            for name in names:
                self.nets[name] = torch.compile(self.nets[name], mode=config.train.compile_mode, dynamic=False)
        self.groups = groups
        clip_sets = None
        if config.optim.clip_per_network:
            clip_sets = {g: [list(self.nets[n].parameters()) for n in networks] for g, networks in groups.items()}
        self.ops = OptimizerOps(
            self.optimizers, config.optim.grad_clip, backward=self.accelerator.backward, clip_sets=clip_sets
        )

    def group_states(self) -> dict[str, dict[str, Any]]:
        return {
            group: {
                "nets": {n: unwrap(self.nets[n]).state_dict() for n in networks},
                "optimizer": self.optimizers[group].state_dict(),
            }
            for group, networks in self.groups.items()
        }

    def load(self, checkpoint: Checkpoint) -> None:
        for group, networks in self.groups.items():
            state = load_file(checkpoint.path / group_file(group))
            for n in networks:
                unwrap(self.nets[n]).load_state_dict(state["nets"][n])
            self.optimizers[group].load_state_dict(state["optimizer"])
