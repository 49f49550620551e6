"""CycleGAN translation networks (ResNet generator, PatchGAN discriminator), at LR resolution."""

from __future__ import annotations

import torch
from torch import nn

from .layers import init_normal, norm_layer, upsample_x2
from .registry import DISCRIMINATORS, GENERATORS


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"  # a conv before BatchNorm needs no bias
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=use_bias),
            make_norm(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=use_bias),
            make_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@GENERATORS.register("resnet")
class ResnetGenerator(nn.Module):
    """7×7 head, `n_downsampling` stride-2 convs, `n_blocks` residual blocks, as many ×2 ups, 7×7 tail, tanh.

    Input height/width must be divisible by 2**n_downsampling.

    `residual=True` (not in the reference) outputs clamp(x + net(x), -1, 1) with the last conv zero-initialised:
    the generator starts as the identity and learns only the degradation (or its removal). With instance norm on
    small LR crops the plain generator spends thousands of steps re-learning colours the skip gives for free.
    `noise_channels=k` (not in the reference) feeds k channels of N(0, 1) noise beside the image: a deterministic
    generator cannot produce sensor noise on flat regions, which a real-LR degradation usually has.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        norm: str = "instance",
        up_mode: str = "transpose",
        residual: bool = False,
        noise_channels: int = 0,
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels + noise_channels, ngf, 7, bias=use_bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(n_downsampling):
            ch = ngf * 2**i
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=use_bias), make_norm(ch * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 2**n_downsampling, norm) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            ch = ngf * 2**i
            layers += [*upsample_x2(ch, ch // 2, up_mode, use_bias), make_norm(ch // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.multiple, self.residual, self.noise_channels = 2**n_downsampling, residual, noise_channels
        init_normal(self)
        if residual:
            last_conv = layers[-2]
            nn.init.zeros_(last_conv.weight)
            nn.init.zeros_(last_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        if self.noise_channels:
            n, _, h, w = x.shape
            inp = torch.cat([x, torch.randn(n, self.noise_channels, h, w, device=x.device, dtype=x.dtype)], 1)
        if self.residual:
            return (x + self.model(inp)).clamp(-1.0, 1.0)
        return self.model(inp)


@DISCRIMINATORS.register("patchgan")
class PatchDiscriminator(nn.Module):
    """PatchGAN: 4×4 convs with strides 2,…,2,1,1 (ndf·2^i channels, capped at 8·ndf), LeakyReLU 0.2.

    The reference's last conv has ndf output channels; this one has **one**, as in CycleGAN/pix2pix: every
    output channel is an independent linear read-out of the same features compared against the same 0/1 target,
    so ndf of them add 0.5 M parameters and FLOPs without adding anything the LSGAN loss can use.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=use_bias),
                make_norm(out),
                nn.LeakyReLU(0.2, True),
            ]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
