"""The five networks of CycleSR and their four optimizers, built from the config's registry entries."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, OptimConfig
from ..data.images import DATA_RANGE
from ..models import build_network
from .stages import network_groups

# Network name -> which registry (and which `model.*` config entry) builds it. G: X→Y is `gen_clean_to_real`,
# F: Y→X is `gen_real_to_clean`, D_X is `disc_clean`, D_Y is `disc_real`.
ROLES = {
    "gen_clean_to_real": "generator",
    "gen_real_to_clean": "generator",
    "disc_clean": "discriminator",
    "disc_real": "discriminator",
    "sr": "sr",
}
EXPORTED = "sr"  # the network a finished run is for
# Generator arguments that only the degrading direction G takes: F removes the degradation, so a JPEG stage at its
# end would only have to learn to switch itself off, and a fixed blur at its input would only add to what it removes.
DEGRADING_ONLY = ("jpeg_quality", "jpeg_quality_rate", "input_blur", "real_noise", "real_noise_at")


def network_configs(model: ModelConfig, value_range: tuple[float, float] = DATA_RANGE) -> dict[str, dict[str, Any]]:
    """{network: {"registry", "name", "args", "value_range"}}: enough to rebuild and call any network from a
    checkpoint alone."""
    entries = {"generator": model.generator, "discriminator": model.discriminator, "sr": model.sr}

    def args(net: str, role: str) -> dict[str, Any]:
        given = dict(entries[role].args)
        return {k: v for k, v in given.items() if k not in DEGRADING_ONLY} if net == "gen_real_to_clean" else given

    return {
        net: {"registry": role, "name": entries[role].name, "args": args(net, role), "value_range": list(value_range)}
        for net, role in ROLES.items()
    }


def build_networks(model: ModelConfig) -> nn.ModuleDict:
    return nn.ModuleDict(
        {net: build_network(c["registry"], c["name"], c["args"]) for net, c in network_configs(model).items()}
    )


def build_optimizers(nets: nn.ModuleDict, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam per group, holding exactly that group's networks' parameters."""
    return {
        g.name: torch.optim.Adam(
            [p for name in g.networks for p in nets[name].parameters()],
            lr=g.base_lr,
            betas=optim.betas,
            foreach=None if optim.fused else optim.foreach,
            fused=optim.fused or None,
        )
        for g in network_groups(optim)
    }


# The networks `batched_calls` calls on several batches concatenated (the SR net is always called on one).
BATCHED_NETWORKS = ("gen_clean_to_real", "gen_real_to_clean", "disc_clean", "disc_real")


def batch_norm_in_batched_calls(nets: nn.ModuleDict) -> list[str]:
    """The networks batched calls would concatenate images into that hold BatchNorm: there the batch statistics,
    and so the maths, would change. Instance norm and no norm treat every image alone."""
    return [
        name
        for name in BATCHED_NETWORKS
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in nets[name].modules())
    ]
