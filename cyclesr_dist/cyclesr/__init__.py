"""The CycleSR recipe: networks, optimizer groups, stages, the joint step, image pools, sample grids and
validation, handed to the engine as one `CycleSRSpec`."""

from .networks import EXPORTED, ROLES, build_networks, build_optimizers, network_configs
from .pool import ImagePool
from .spec import CycleSRModel, CycleSRSpec
from .stages import NetworkGroup, Stage, cycle_sr_weight, lr_factor, network_groups, stage_for_epoch
from .step import Batch, CycleSR, StepOps

__all__ = [
    "EXPORTED",
    "ROLES",
    "Batch",
    "CycleSR",
    "CycleSRModel",
    "CycleSRSpec",
    "ImagePool",
    "NetworkGroup",
    "Stage",
    "StepOps",
    "build_networks",
    "build_optimizers",
    "cycle_sr_weight",
    "lr_factor",
    "network_configs",
    "network_groups",
    "stage_for_epoch",
]
