"""What the engine needs from a recipe: the engine never names a network; everything model-specific comes from a
`TrainSpec` and the `TrainModel` it builds (cf. torchtitan's TrainSpec)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

Batch = dict[str, torch.Tensor]
ValPair = tuple[str, np.ndarray, np.ndarray]  # (name, lr_uint8, hr_uint8)


class TrainModel(Protocol):
    """The recipe's stateful model around the (wrapped) networks."""

    def train_step(self, micro_batches: list[Batch], step: int, ops: Any) -> dict[str, torch.Tensor]:
        """One optimizer step of every group the recipe trains at `step` (completed steps so far); `ops` is the
        backend's StepOps (backward, per-group step, frozen forwards). Returns losses to log."""

    def progress(self, step: int) -> dict[str, Any]:
        """Where the recipe is at `step` (e.g. epoch and stage), for the log."""

    def sample_grids(self, batch: Batch, val_pairs: list[ValPair]) -> dict[str, np.ndarray]:
        """HxWx3 uint8 images to show in the tracker."""

    def validate(self, val_pairs: list[ValPair], step: int) -> dict[str, float]:
        """Metrics on the paired validation images, after `step` completed steps."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainSpec(Protocol):
    export_network: str  # the network a finished run is for (`cyclesr export`, `eval`, `upscale` read it)

    def build_networks(self) -> nn.ModuleDict: ...

    def network_groups(self) -> dict[str, tuple[str, ...]]:
        """Optimizer group -> the networks it updates (one optimizer per group)."""

    def network_configs(self) -> dict[str, dict[str, Any]]:
        """Network -> {"registry", "name", "args"}: written into each checkpoint so a network can be rebuilt."""

    def build_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]: ...

    def learning_rates(self, step: int) -> dict[str, float]:
        """Group -> learning rate of the step after `step` completed steps (a pure function: nothing to save)."""

    def build_model(self, nets: nn.ModuleDict, raw: nn.ModuleDict, rank: int) -> TrainModel:
        """`nets` as wrapped by the backend (for training), `raw` the plain modules (for inference)."""
