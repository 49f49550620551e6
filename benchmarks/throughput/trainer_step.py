"""The `trainer` variant: `engine.trainer.Trainer`'s own per-step code, without data loading, logging or
checkpoint I/O.

Per step, as in `Trainer.train`: the batch to the device (`_to_device`), `train_step` (learning rates from the
spec, gradient-norm bookkeeping, the backend's autocast, the recipe's step through the backend's `StepOps`; losses
and norms stay tensors, as on a step that logs nothing) and the preemption check.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from cyclesr_dist.config import Config
from cyclesr_dist.cyclesr import CycleSRSpec, Stage
from cyclesr_dist.engine.backends import prepare_backend
from cyclesr_dist.engine.preemption import PreemptionFlag
from cyclesr_dist.engine.trainer import Trainer

from .setups import Built, Setup, fresh_networks

# The trainer derives epoch and stage from its step count: one endless epoch keeps the stage (and the learning
# rates) fixed however many steps are timed.
STEPS_PER_EPOCH = 10**9


class StepOnlyTrainer(Trainer):
    """A `Trainer` holding only what `train_step` and `_to_device` read: the backend and the recipe's model, built
    as `Trainer.__init__` builds them, but no loader, validation images or checkpoints (nothing on disk)."""

    def __init__(self, config: Config, nets: nn.ModuleDict, step: int) -> None:
        self.config, self.spec = config, CycleSRSpec(config)
        spec = self.spec
        self.backend = prepare_backend(nets, spec.build_optimizers(nets), spec.network_groups(), config)
        accelerator = self.backend.accelerator
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        self.device, self.is_main = accelerator.device, accelerator.is_main_process
        self.model = spec.build_model(self.backend.nets, self.backend.raw_nets, self.rank)
        self.step = step


def step_only_trainer(setup: Setup, stage: Stage, bf16: bool) -> StepOnlyTrainer:
    """The trainer at the first step of `stage`, with the setup's initial weights, tracking off."""
    c = setup.config
    config = dataclasses.replace(
        c,
        seed=0,  # the trainer seeds its image pools from config.seed and the rank; 0 = the other variants' pools
        data=dataclasses.replace(c.data, steps_per_epoch=STEPS_PER_EPOCH),
        train=dataclasses.replace(c.train, mixed_precision="bf16" if bf16 else "no"),
        wandb=dataclasses.replace(c.wandb, mode="disabled"),
    )
    epoch = {Stage.TRANSLATION: 1, Stage.JOINT: config.stages.joint_epoch}[stage]
    trainer = StepOnlyTrainer(config, fresh_networks(setup, channels_last=False), (epoch - 1) * STEPS_PER_EPOCH)
    if trainer.model.stage(trainer.step) is not stage:
        raise RuntimeError(f"trainer would run the {trainer.model.stage(trainer.step).value} stage, not {stage.value}")
    return trainer


def build_trainer_step(setup: Setup, stage: Stage, bf16: bool) -> Built:
    trainer = step_only_trainer(setup, stage, bf16)
    batch = setup.batch()
    preemption = PreemptionFlag()

    def trainer_step() -> None:
        trainer.train_step([trainer._to_device(batch)])
        preemption.should_stop(trainer.device)

    return Built(trainer_step, trainer.backend.raw_nets, preemption.restore)
