"""Small torch helpers every layer uses: the plain module behind a wrapper, a scoped eval mode, and the Gaussian
filter (G's input blur, the content loss's low pass and the sampled clean LR share it)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
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


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, support ±⌈3σ⌉ (at least ±1)."""
    if sigma <= 0:
        raise ValueError(f"a Gaussian blur σ is in pixels and > 0, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    return taps / taps.sum()


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian, support ±⌈3σ⌉ (at least ±1)."""
    taps = gaussian_taps(sigma)
    return torch.outer(taps, taps)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Every channel of NCHW `x` filtered by one 2-D `kernel` (odd size), reflect-padded."""
    r, channels = kernel.shape[-1] // 2, x.shape[1]
    weight = kernel.to(x).expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), weight, groups=channels)
