"""CycleSR as the engine sees it: a `TrainSpec` (networks, optimizer groups, learning rates, what to export) and
the stateful model it builds (the joint step, sample grids, validation, image pools)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..data.images import clean_lr_kind, to_value_range
from ..serve.export import in_data_range
from .measured import real_noise_bank
from .networks import EXPORTED, build_networks, build_optimizers, network_configs
from .stages import Stage, cycle_sr_weight, network_groups, stage_for_epoch
from .step import Batch, CycleSR, StepOps
from .validation import ValPair, sample_grids, validate_sr, validate_translation


class CycleSRSpec:
    """Everything model-specific the engine needs, from the config alone."""

    export_network = EXPORTED

    def __init__(self, config: Config) -> None:
        self.config = config
        self.groups = network_groups(config.optim)

    def epoch(self, step: int) -> int:
        """The epoch (from 1) of the step that runs after `step` completed steps."""
        return step // self.config.data.steps_per_epoch + 1

    def build_networks(self) -> nn.ModuleDict:
        nets = build_networks(self.config.model)
        if self.config.model.generator.args.get("real_noise"):  # samples of the user's real LR (`real_noise`)
            nets["gen_clean_to_real"].set_noise_bank(real_noise_bank(self.config))
        return nets

    def network_groups(self) -> dict[str, tuple[str, ...]]:
        return {g.name: g.networks for g in self.groups}

    def network_configs(self) -> dict[str, dict[str, Any]]:
        return network_configs(self.config.model, self.config.data.value_range)

    def build_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        return build_optimizers(nets, self.config.optim)

    def learning_rates(self, step: int) -> dict[str, float]:
        epoch, c = self.epoch(step), self.config
        return {g.name: g.lr(epoch, c.stages, c.optim) for g in self.groups}

    def build_model(self, nets: nn.ModuleDict, raw: nn.ModuleDict, rank: int) -> CycleSRModel:
        """`nets`: as wrapped by the engine (DDP, DeepSpeed) for training; `raw`: the plain modules, for
        inference. Each rank gets its own image pools."""
        return CycleSRModel(self, nets, raw, rank)


class CycleSRModel:
    def __init__(self, spec: CycleSRSpec, nets: nn.ModuleDict, raw: nn.ModuleDict, rank: int) -> None:
        c = spec.config
        self.spec, self.raw = spec, raw
        self.value_range = c.data.value_range
        # Inference (grids, validation) takes and gives [-1, 1] images whatever range the networks train in.
        self.gen_clean_to_real = in_data_range(raw["gen_clean_to_real"], self.value_range)
        self.sr = in_data_range(raw["sr"], self.value_range)
        self.joint = CycleSR(
            nets,
            c.loss,
            pool_seed=c.seed * 1000 + rank,
            batched_calls=c.train.batched_calls,
            vega_sr_forwards=c.train.sr_forwards == "vega",
            sr_pretrain_on_translated=c.stages.sr_pretrain_input == "translated",
            clean_lr=(c.data.scale, clean_lr_kind(c.data.hr_to_lr)),
        )

    def stage(self, step: int) -> Stage:
        return stage_for_epoch(self.spec.epoch(step), self.spec.config.stages)

    def cycle_sr_lam(self, step: int) -> float:
        c = self.spec.config
        return cycle_sr_weight(self.spec.epoch(step), c.stages, c.loss, c.optim)

    def progress(self, step: int) -> dict[str, Any]:
        values = {"epoch": self.spec.epoch(step), "stage": self.stage(step).value}
        if self.spec.config.loss.cycle_sr_lam_final is not None:  # a weight that moves is logged
            values["weight/cycle_sr"] = self.cycle_sr_lam(step)
        return values

    def train_step(self, micro_batches: list[Batch], step: int, ops: StepOps) -> dict[str, torch.Tensor]:
        """Batches arrive in [-1, 1]; the networks train, and every loss is taken, in `data.value_range`."""
        in_range = [{k: to_value_range(v, self.value_range) for k, v in b.items()} for b in micro_batches]
        return self.joint.optimize_parameters(in_range, self.stage(step), ops, self.cycle_sr_lam(step))

    def sample_grids(self, batch: Batch, val_pairs: list[ValPair]) -> dict[str, np.ndarray]:
        data = self.spec.config.data
        return sample_grids(self.gen_clean_to_real, self.sr, batch, val_pairs, data.scale, clean_lr_kind(data.hr_to_lr))

    def validate(self, val_pairs: list[ValPair], step: int) -> dict[str, float]:
        """G against the true LR always; the SR net once it has been trained (not in the translation stage)."""
        data = self.spec.config.data
        scale = data.scale
        values = validate_translation(self.gen_clean_to_real, val_pairs, scale, clean_lr_kind(data.hr_to_lr))
        if self.stage(max(0, step - 1)) is not Stage.TRANSLATION:
            values |= validate_sr(self.sr, val_pairs, scale, self.spec.config.train.val_max_shift)
        return values

    def state_dict(self) -> dict:
        return self.joint.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.joint.load_state_dict(state, next(self.raw.parameters()).device)
