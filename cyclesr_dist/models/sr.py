"""Super-resolution networks. All map an LR image in [-1, 1] to a ×`upscale` image in the same range."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import init_normal, norm_layer
from .registry import SR_NETS


def _conv3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


def _pixelshuffle_upsampler(nf: int, upscale: int) -> list[nn.Module]:
    if upscale & (upscale - 1):
        raise ValueError(f"upscale must be a power of two, got {upscale}")
    stages: list[nn.Module] = []
    for _ in range(int(math.log2(upscale))):
        stages += [_conv3(nf, nf * 4), nn.PixelShuffle(2), nn.ReLU(True)]
    return stages


def bicubic_upsample(lr: torch.Tensor, upscale: int) -> torch.Tensor:
    """The bicubic ×upscale image the network's output is added to when `bicubic_skip` is on."""
    return F.interpolate(lr, scale_factor=upscale, mode="bicubic", align_corners=False)


@SR_NETS.register("vdsr_lr")
class LRSpaceVDSR(nn.Module):
    """The reference's "VDSR": it works in LR space and upsamples at the end (no bicubic pre-upsampling).

    3×3 feature conv; `nb` conv-norm-ReLU blocks of `nf` channels plus a conv-norm, inside a global skip;
    log2(upscale) ×2 pixel-shuffle stages (conv → shuffle → ReLU); two 3×3 convs at HR resolution.
    `bicubic_skip=True` (not in the reference) adds the bicubic upsampling of the input to the output, so the
    network starts at bicubic quality and learns only the residual: far fewer steps to beat bicubic.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        nf: int = 64,
        nb: int = 20,
        upscale: int = 4,
        norm: str = "none",
        bicubic_skip: bool = False,
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        body: list[nn.Module] = []
        for _ in range(nb):
            body += [_conv3(nf, nf), make_norm(nf), nn.ReLU()]  # not in place after a norm: norm_layer
        body += [_conv3(nf, nf), make_norm(nf)]
        self.head = _conv3(in_channels, nf)
        self.body = nn.Sequential(*body)
        self.upsample = nn.Sequential(*_pixelshuffle_upsampler(nf, upscale))
        self.tail = nn.Sequential(_conv3(nf, nf), nn.ReLU(True), _conv3(nf, out_channels))
        self.upscale, self.bicubic_skip = upscale, bicubic_skip
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body(feat)
        out = self.tail(self.upsample(feat))
        return out + bicubic_upsample(x, self.upscale) if self.bicubic_skip else out


class _SRResBlock(nn.Module):
    def __init__(self, nf: int, norm: str) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        self.block = nn.Sequential(_conv3(nf, nf), make_norm(nf), nn.PReLU(nf), _conv3(nf, nf), make_norm(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@SR_NETS.register("srresnet")
class SRResNet(nn.Module):
    """SRResNet (Ledig et al. 2017): 9×9 head, `nb` residual blocks, global skip, pixel-shuffle ×2 stages, 9×9 tail;
    `bicubic_skip` as in `LRSpaceVDSR`."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        nf: int = 64,
        nb: int = 16,
        upscale: int = 4,
        norm: str = "batch",
        bicubic_skip: bool = False,
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        self.head = nn.Sequential(nn.Conv2d(in_channels, nf, 9, padding=4), nn.PReLU(nf))
        self.body = nn.Sequential(*[_SRResBlock(nf, norm) for _ in range(nb)], _conv3(nf, nf), make_norm(nf))
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(upscale))):
            stages += [_conv3(nf, nf * 4), nn.PixelShuffle(2), nn.PReLU(nf)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(nf, out_channels, 9, padding=4)
        self.upscale, self.bicubic_skip = upscale, bicubic_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body(feat)
        out = self.tail(self.upsample(feat))
        return out + bicubic_upsample(x, self.upscale) if self.bicubic_skip else out
