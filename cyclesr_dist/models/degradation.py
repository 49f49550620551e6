"""The networks of a degradation fitted to the real LR photos (`cyclesr.degradation_fit`): a learned HR-resolution
kernel followed by decimation, a learned signal-dependent noise, and a small local discriminator. Plain modules;
the fitting loop lives in the recipe."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def kernel_size(scale: int) -> int:
    """Taps per side of the HR kernel: 5·s, room for a blur of σ ≈ 2.5 HR px or a motion of 8 HR px at ×4, and
    (5s − s)/2 taps of padding each side put its centre on bicubic's grid (LR pixel i at HR s·i + (s−1)/2)."""
    return 5 * scale


class DownscaleKernel(nn.Module):
    """HR → LR: a learned K×K kernel (K = 5·s), applied to every channel, then ×1/s decimation on bicubic's grid.
    The taps are free (a sharpening or ringing kernel has negative ones) and divided by their sum, so brightness is
    kept; they start as a Gaussian of σ `sigma` HR px. A global sub-pixel shift of the grid cannot be learned
    without pairs, so `centre_offset` (to be held at 0 by the fit) measures the kernel's centre of mass."""

    def __init__(self, scale: int = 4, sigma: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        k = kernel_size(scale)
        t = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
        g = torch.exp(-0.5 * (t / sigma) ** 2)
        taps = torch.outer(g, g)
        self.taps = nn.Parameter(taps / taps.sum())
        self.register_buffer("positions", t, persistent=False)

    def kernel(self) -> torch.Tensor:
        return self.taps / self.taps.sum()

    def centre_offset(self) -> torch.Tensor:
        """(dy, dx) of the kernel's centre of mass from its middle, HR px."""
        k = self.kernel()
        return torch.stack([(k.sum(1) * self.positions).sum(), (k.sum(0) * self.positions).sum()])

    def spread(self) -> torch.Tensor:
        """Σ |tap| · (distance from the middle / half-width)⁴: large for mass near the border, small for a compact
        kernel; the fit's prior that a camera's or a resizer's kernel is local."""
        r2 = self.positions[:, None] ** 2 + self.positions[None, :] ** 2
        return (self.kernel().abs() * (r2 / r2.max()) ** 2).sum()

    def forward(self, hr: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """NCHW HR → N C H/s W/s. `pad=False`: the HR carries (K − s)/2 extra pixels per side (a crop cut larger),
        so no border is invented; the output is then ((H − K) / s + 1)²."""
        k = self.kernel()
        c, size = hr.shape[1], k.shape[0]
        p = (size - self.scale) // 2
        x = F.pad(hr, (p, p, p, p), mode="reflect") if pad else hr
        return F.conv2d(x, k.to(hr.dtype)[None, None].expand(c, 1, size, size), stride=self.scale, groups=c)


class SignalNoise(nn.Module):
    """Gaussian noise whose variance grows with the signal, a·v + b for v the value on [0, 1] (shot and read noise
    of a sensor); a and b learned (on a log scale), b starting at `sigma` grey levels. Images in [-1, 1]."""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        self.log_b = nn.Parameter(torch.tensor(math.log((sigma / 255) ** 2)))
        self.log_a = nn.Parameter(torch.tensor(math.log(1e-5)))

    def levels(self) -> tuple[float, float]:
        """(a, b) on the [0, 1] scale."""
        return self.log_a.exp().item(), self.log_b.exp().item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = self.log_a.exp() * ((x + 1) / 2).clamp(0, 1) + self.log_b.exp()
        return x + 2 * var.sqrt() * torch.randn_like(x)


class LocalDiscriminator(nn.Module):
    """Judges each 7×7 LR neighbourhood (three 3×3 convolutions, then 1×1), on the image minus its 5×5 local mean:
    edges, texture and noise, not colour or brightness, which differ between the two piles of scenes."""

    def __init__(self, nf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, k in ((3, 3), (nf, 3), (nf, 3), (nf, 1)):
            layers += [nn.Conv2d(c_in, nf, k), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Conv2d(nf, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local_mean = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
        return self.net(4 * (x - local_mean))  # ×4: the fine band of an 8-bit image is small in [-1, 1]
