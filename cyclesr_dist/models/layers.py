"""Small building blocks shared by the networks."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

NormFactory = Callable[[int], nn.Module]


def norm_layer(kind: str) -> NormFactory:
    """`instance` (no affine, no running stats: the CycleGAN default), `batch`, or `none`.

    The activation after a norm must not be in place: InstanceNorm returns a view of a reshaped batch norm's
    output, and an in-place op on a view makes autograd copy that gradient in the backward (a whole activation
    read and written again; at the reference config 24.6 of the step's 90 GB moved). The values are the same."""
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: instance, batch, none")


def init_normal(net: nn.Module, std: float = 0.02) -> nn.Module:
    """CycleGAN's init: conv weights N(0, std), biases 0, norm weights N(1, std)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return net


def upsample_x2(in_ch: int, out_ch: int, mode: str, bias: bool) -> list[nn.Module]:
    """One ×2 upsampling conv stage (no norm/activation): transpose | pixelshuffle | resize."""
    if mode == "transpose":
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    if mode == "pixelshuffle":
        return [nn.Conv2d(in_ch, out_ch * 4, 3, padding=1, bias=bias), nn.PixelShuffle(2)]
    if mode == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)]
    raise ValueError(f"unknown up_mode {mode!r}; valid: transpose, pixelshuffle, resize")
