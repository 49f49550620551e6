"""DeepSpeed ZeRO-1/2 backend: one DeepSpeed engine per optimizer group, driven by the unchanged joint step.

Selection. The trainer uses this backend when the process runs with `ACCELERATE_USE_DEEPSPEED=true`, which
`accelerate launch --config_file configs/accelerate/deepspeed_zero{1,2}.yaml` exports (see `deepspeed_requested`).
`settings.resolve_settings` then reads (all optional, all checked against the job config):

  ACCELERATE_DEEPSPEED_ZERO_STAGE        1 or 2 (default 2). 0 and 3 are refused (see `resolve_settings`).
  ACCELERATE_GRADIENT_CLIPPING           must equal `optim.grad_clip`, the value every engine gets (0 = off).
  ACCELERATE_GRADIENT_ACCUMULATION_STEPS must be 1 (as must `train.gradient_accumulation_steps`).
  ACCELERATE_MIXED_PRECISION             no | bf16, the same as `train.mixed_precision` unless one of them is "no";
                                         bf16 becomes DeepSpeed `torch_autocast` (fp32 master weights), fp16 is refused.
  ACCELERATE_DEEPSPEED_CONFIG_FILE       optional JSON used as the base config of every engine (bucket sizes, ...);
                                         the keys above and the batch size are still set from the job config.
  WORLD_SIZE                             with `data.batch_size` gives `train_micro_batch_size_per_gpu`
                                         (data.batch_size // WORLD_SIZE), explicit in every engine's config.

Layout. Each optimizer group of the spec (CycleSR: G = both generators, D_X, D_Y, SR) becomes a `GroupModule`
(a container of the group's networks with `forward(member, *inputs)`), prepared by its own `Accelerator` with
its own `DeepSpeedPlugin` (`engines.build_engines`). The joint model gets an `EngineMember` per network: calling
it runs the *engine's* forward, which is what makes DeepSpeed's backward hooks see the output; its parameters are
the raw network's, so `set_requires_grad` freezes the right tensors.

The backward contract (measured on deepspeed 0.19.8, 2 CPU ranks, ZeRO-1 and ZeRO-2):
  * A frozen forward (the discriminators in the G step, SR when `sr_lam == 0`) must call the raw module
    (`DeepSpeedOps.frozen`): an engine forward registers output hooks, and gradient flowing through a frozen
    engine's output runs that engine's backward epilogue with no gradients.
  * The joint step forwards one engine several times per backward (G three times in the G step, each
    discriminator twice in the D step) and one loss reaches several engines (D_X + D_Y; G + SR). Each engine
    forward runs the engine's backward prologue, and DeepSpeed skips the epilogue (the gradient reduction into
    ZeRO's partitions) of a torch-style backward once that prologue ran more than once. Measured: plain
    `loss.backward()` fails at the first `step` (`KeyError: 0` in `scaled_global_norm`, D_X), and
    `engine_D_X.backward(loss)` fails the same way at D_Y's `step`. `joint_backward` does for all engines at
    once what `engine.backward` does for one (DeepSpeed's "jointly training models with shared loss": call the
    epilogue yourself): mark every engine as in an engine backward, run `loss.backward()`, then run each
    participating engine's epilogue exactly once.
  * Then `engine.step()` per group: clipping (`gradient_clipping` in the config), optimizer step, zero grad.

Checkpoints (`checkpoint.py`): `step_dir/deepspeed/<group>/` per engine, written with `engine.save_checkpoint`
(collective; optimizer shards per rank); `group-<G>.pt` gets the full weights too (ZeRO-1/2 keep whole parameters
on every rank), for export and evaluation. ZeRO-1/2 optimizer shards only load at the world size that wrote them;
`universal.convert_to_universal(step_dir)` (offline, one process; `cyclesr checkpoints to-universal STEP_DIR`)
converts every group with `deepspeed.checkpoint.ds_to_universal --inject_missing_state`, and loading then uses the
universal copy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ....checkpoint_format import Checkpoint
from ....config import Config
from ....errors import BadInput
from ....torch_utils import unwrap
from ..base import Backend, process_group_kwargs, tracker_kwargs
from .backward import DeepSpeedOps, check_engine_internals
from .checkpoint import load_engines, save_engines
from .engines import EngineMember, build_engines
from .settings import DeepSpeedSettings, deepspeed_requested, resolve_settings


class DeepSpeedBackend(Backend):
    def __init__(
        self,
        nets: nn.ModuleDict,
        optimizers: dict[str, torch.optim.Optimizer],
        groups: dict[str, tuple[str, ...]],
        config: Config,
    ) -> None:
        if config.train.compile:
            raise BadInput("train.compile is not supported with the DeepSpeed backend")
        self.settings: DeepSpeedSettings = resolve_settings(config)
        # gloo wherever there is no GPU, one process included (DeepSpeed needs a process group)
        handlers = [process_group_kwargs(config, gloo=not torch.cuda.is_available())]
        accelerator_kwargs = {**tracker_kwargs(config), "kwargs_handlers": handlers}
        self.accelerators, self.engines = build_engines(nets, groups, optimizers, self.settings, accelerator_kwargs)
        for engine in self.engines.values():
            check_engine_internals(engine)
        self.accelerator = next(iter(self.accelerators.values()))  # rank, device, trackers: one shared state
        self.groups = groups
        owner = {n: group for group, networks in groups.items() for n in networks}
        self.nets = nn.ModuleDict({n: EngineMember(self.engines[owner[n]], n) for n in nets.keys()})
        self.optimizers = {name: engine.optimizer for name, engine in self.engines.items()}
        self.ops = DeepSpeedOps(self.engines)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Instead of `accelerator.autocast()`, a no-op under DeepSpeed: under bf16 it puts the raw-module forwards
        and the losses under the same autocast the engines apply."""
        if self.settings.mixed_precision == "bf16":
            return torch.autocast(device_type=self.accelerator.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def group_states(self) -> dict[str, dict[str, Any]]:
        # Full weights only: the optimizer state is in the engines' own (sharded) files.
        return {
            group: {
                "nets": {
                    n: {k: v.detach().cpu().clone() for k, v in unwrap(self.nets[n]).state_dict().items()}
                    for n in networks
                }
            }
            for group, networks in self.groups.items()
        }

    def save_sharded(self, step_dir: Path) -> None:
        save_engines(self.engines, step_dir)

    def load(self, checkpoint: Checkpoint) -> None:
        load_engines(self.engines, checkpoint.path, self.settings.world_size)


__all__ = ["DeepSpeedBackend", "deepspeed_requested"]
