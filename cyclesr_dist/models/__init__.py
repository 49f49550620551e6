"""Networks (plain nn.Modules, no training logic) and the registries that make each one a config entry.

Adding an SR network: write the class in `sr.py` (or a new module imported here) and decorate it with
`@SR_NETS.register("name")`; select it with `model.sr.name: name` in the config.
"""

from . import cyclegan, sr  # noqa: F401  (importing registers the networks)
from .registry import DISCRIMINATORS, GENERATORS, SR_NETS, Registry

__all__ = ["DISCRIMINATORS", "GENERATORS", "SR_NETS", "Registry"]
