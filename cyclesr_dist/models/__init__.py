"""Networks (plain nn.Modules, no training logic) and the registries that make each one a config entry.

Adding an SR network: write the class in `sr.py` (or a new module imported here) and decorate it with
`@SR_NETS.register("name")`; select it with `model.sr.name: name` in the config.
"""

from typing import Any

from torch import nn

from . import cyclegan, sr  # noqa: F401  (importing registers the networks)
from .registry import DISCRIMINATORS, GENERATORS, SR_NETS, Registry

# Registry by kind: the key a checkpoint's meta.json stores next to each network's name and arguments.
REGISTRIES = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "sr": SR_NETS}


def build_network(kind: str, name: str, args: dict[str, Any] | None = None) -> nn.Module:
    """`REGISTRIES[kind].build(name, args)`; an unknown kind names the valid ones."""
    if kind not in REGISTRIES:
        raise KeyError(f"unknown network kind {kind!r}; valid: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind].build(name, args)


__all__ = ["DISCRIMINATORS", "GENERATORS", "REGISTRIES", "SR_NETS", "Registry", "build_network"]
