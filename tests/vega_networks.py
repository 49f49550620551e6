"""A literal transcription of vega's CycleSR network constructors, for tests/test_vega_networks.py only.

Transcribed from vega (huawei-noah/vega) vega/networks/pytorch/cyclesrbodys/networks.py: ConvBlock, UpsampleBlock,
ResBlock, ShortcutBlock, Generator, PatchDiscriminator, initialize (its init_w); and srmodels.py: VDSR. Framework
plumbing dropped: no DataParallel, no `.cuda()`/`.npu()`, the NPU reflection pad, logging.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch.nn as nn
from torch.nn import init


def init_w(module, init_gain=0.02):  # networks.py: initialize.init_w
    classname = module.__class__.__name__
    if hasattr(module, "weight") and (classname.find("Conv") != -1 or classname.find("Linear") != -1):
        init.normal_(module.weight.data, 0.0, init_gain)
        if hasattr(module, "bias") and module.bias is not None:
            init.constant_(module.bias.data, 0.0)
    elif classname.find("BatchNorm2d") != -1:
        init.normal_(module.weight.data, 1.0, init_gain)
        init.constant_(module.bias.data, 0.0)


class ShortcutBlock(nn.Module):  # networks.py: ShortcutBlock
    def __init__(self, module):
        super().__init__()
        self.submodule = module

    def forward(self, x):
        return x + self.submodule(x)


def _norm(norm_type, out_nc):
    if norm_type == "none":
        return None
    if norm_type == "batch":
        return nn.BatchNorm2d(out_nc, affine=True)
    if norm_type == "instance":
        return nn.InstanceNorm2d(out_nc, affine=False)


def _act(act_type):
    if act_type == "none":
        return None
    if act_type == "relu":
        return nn.ReLU(True)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(0.2, True)


def ConvBlock(  # noqa: N802 -- networks.py: ConvBlock
    in_nc, out_nc, kernel_size, stride=1, conv_padding=1, padding_mode="zeros", head_padding=0,
    head_pad_type="none", norm_type="none", act_type="relu",
):  # fmt: skip
    head_pad = nn.ReflectionPad2d(head_padding) if head_pad_type in ("reflect", "replicate") else None
    conv = nn.Conv2d(in_nc, out_nc, kernel_size=kernel_size, stride=stride, padding=conv_padding,
                     padding_mode=padding_mode)  # fmt: skip
    return [i for i in [head_pad, conv, _norm(norm_type, out_nc), _act(act_type)] if i is not None]


def UpsampleBlock(  # noqa: N802 -- networks.py: UpsampleBlock
    in_nc, out_nc, upscale_factor=2, kernel_size=3, stride=1, conv_padding=1, output_padding=0,
    up_mode="pixelshuffle", norm_type="none", act_type="relu",
):  # fmt: skip
    norm, act = _norm(norm_type, out_nc), _act(act_type)
    if up_mode == "transpose":
        upsampler = nn.ConvTranspose2d(in_nc, out_nc, kernel_size=kernel_size, stride=stride, padding=conv_padding,
                                       output_padding=output_padding)  # fmt: skip
        arch = [upsampler, norm, act]
    elif up_mode == "pixelshuffle":
        conv = nn.Conv2d(in_nc, out_nc * (upscale_factor**2), kernel_size=kernel_size, stride=stride,
                         padding=conv_padding)  # fmt: skip
        arch = [conv, nn.PixelShuffle(upscale_factor), norm, act]
    return [i for i in arch if i is not None]


class ResBlock(nn.Module):  # networks.py: ResBlock
    def __init__(self, in_nc, out_nc, kernel_size=3, stride=1, conv_padding=1, norm_type="none", act_type="relu"):
        super().__init__()
        conv_block0 = ConvBlock(in_nc, out_nc, kernel_size, stride=stride, conv_padding=conv_padding,
                                norm_type=norm_type, act_type=act_type)  # fmt: skip
        conv_block1 = ConvBlock(in_nc, out_nc, kernel_size, stride=stride, conv_padding=conv_padding,
                                norm_type=norm_type, act_type="none")  # fmt: skip
        self.conv_block = nn.Sequential(*(conv_block0 + conv_block1))

    def forward(self, x):
        return x + self.conv_block(x)


class Generator(nn.Module):  # networks.py: Generator
    def __init__(self, in_c, out_c, ngf=64, n_resblocks=9, norm_type="batch", up_mode="transpose", name="G"):
        super().__init__()
        head = ConvBlock(in_c, ngf, 7, stride=1, conv_padding=0, head_padding=3, head_pad_type="reflect",
                         norm_type=norm_type, act_type="relu")  # fmt: skip
        down = ConvBlock(ngf, ngf * 2, 3, stride=2, conv_padding=1, norm_type=norm_type, act_type="relu") + ConvBlock(
            ngf * 2, ngf * 4, 3, stride=2, conv_padding=1, norm_type=norm_type, act_type="relu"
        )
        res = [ResBlock(ngf * 4, ngf * 4, 3, stride=1, conv_padding=1, norm_type=norm_type, act_type="relu")
               for _ in range(n_resblocks)]  # fmt: skip
        up = UpsampleBlock(ngf * 4, ngf * 2, 2, 3, stride=2, conv_padding=1, output_padding=1, up_mode=up_mode,
                           norm_type=norm_type, act_type="relu") + UpsampleBlock(
            ngf * 2, ngf, 2, 3, stride=2, conv_padding=1, output_padding=1, up_mode=up_mode, norm_type=norm_type,
            act_type="relu")  # fmt: skip
        tile = ConvBlock(ngf, out_c, 7, stride=1, conv_padding=0, head_padding=3, head_pad_type="reflect",
                         norm_type="none", act_type="none") + [nn.Tanh()]  # fmt: skip
        arch = head + down + res + up + tile
        self.generator = nn.Sequential(OrderedDict((name + str(i), layer) for i, layer in enumerate(arch)))

    def forward(self, x):
        return self.generator(x)


class PatchDiscriminator(nn.Module):  # networks.py: PatchDiscriminator
    def __init__(self, input_nc, ndf=64, norm_type="batch", act_type="leakyrelu", name="D_X"):
        super().__init__()
        k = 4
        arch = (
            ConvBlock(input_nc, ndf, k, stride=2, conv_padding=1, norm_type="none", act_type=act_type)
            + ConvBlock(ndf, ndf * 2, k, stride=2, conv_padding=1, norm_type="instance", act_type=act_type)
            + ConvBlock(ndf * 2, ndf * 4, k, stride=2, conv_padding=1, norm_type="instance", act_type=act_type)
            + ConvBlock(ndf * 4, ndf * 8, k, stride=1, conv_padding=1, norm_type="instance", act_type=act_type)
            + ConvBlock(ndf * 8, ndf, k, stride=1, conv_padding=1, norm_type="none", act_type="none")
        )
        self.discriminator = nn.Sequential(OrderedDict((name + str(i), layer) for i, layer in enumerate(arch)))

    def forward(self, x):
        return self.discriminator(x)


class VDSR(nn.Module):  # srmodels.py: VDSR
    def __init__(self, in_nc, out_nc, nf, nb, norm_type="batch", upscale=4, act_type="relu", up_mode="pixelshuffle"):
        super().__init__()
        fea_conv = ConvBlock(in_nc, nf, 3, stride=1, conv_padding=1, norm_type="none", act_type="none")
        blocks = []
        for _ in range(nb):
            blocks += ConvBlock(nf, nf, 3, stride=1, conv_padding=1, norm_type=norm_type, act_type=act_type)
        blocks += ConvBlock(nf, nf, 3, stride=1, conv_padding=1, norm_type=norm_type, act_type="none")
        shortcut = ShortcutBlock(nn.Sequential(*blocks))
        hr_conv0 = ConvBlock(nf, nf, 3, stride=1, conv_padding=1, norm_type="none", act_type=act_type)
        hr_conv1 = ConvBlock(nf, out_nc, 3, stride=1, conv_padding=1, norm_type="none", act_type="none")
        upsample = []
        for _ in range(int(math.log(upscale, 2))):
            upsample += UpsampleBlock(nf, nf, up_mode=up_mode, act_type=act_type)
        self.model = nn.Sequential(*(fea_conv + [shortcut] + upsample + hr_conv0 + hr_conv1))

    def forward(self, x):
        return self.model(x)
