"""Name -> network class registries, so a network is a config entry (BasicSR style)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import BadInput


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[nn.Module]] = {}

    def register(self, name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
        def add(cls: type[nn.Module]) -> type[nn.Module]:
            if name in self._entries:
                raise KeyError(f"{self.kind} network {name!r} is registered twice")
            self._entries[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type[nn.Module]:
        if name not in self._entries:
            raise BadInput(f"unknown {self.kind} network {name!r}; registered: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, args: dict[str, Any] | None = None) -> nn.Module:
        """Instantiate `name` with `args`, naming any argument the class does not take."""
        cls = self.get(name)
        args = dict(args or {})
        params = inspect.signature(cls.__init__).parameters
        valid = [p for p in params if p != "self"]
        unknown = sorted(set(args) - set(valid))
        if unknown:
            raise BadInput(f"{self.kind} network {name!r} got unknown argument(s) {unknown}; valid: {', '.join(valid)}")
        try:
            return cls(**args)
        except BadInput:
            raise
        except ValueError as err:  # a constructor refusing an argument's value: the user's config, not a bug
            raise BadInput(f"{self.kind} network {name!r}: {err}") from err


GENERATORS = Registry("translation generator")
DISCRIMINATORS = Registry("discriminator")
SR_NETS = Registry("super-resolution")
