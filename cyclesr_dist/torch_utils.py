"""Small torch helpers every layer uses: the plain module behind a wrapper, and a scoped eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside DDP, a DeepSpeed engine member (`.module`) and torch.compile (`._orig_mod`)."""
    while True:
        if isinstance(getattr(net, "_orig_mod", None), nn.Module):
            net = net._orig_mod
        elif isinstance(getattr(net, "module", None), nn.Module):
            net = net.module
        else:
            return net


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put `net` in eval mode for the block and restore its previous train/eval state afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)
