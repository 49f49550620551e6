"""A differentiable JPEG stage with a learned quality, for the translation generator (not in the reference).

Why: real LR photos are nearly always JPEG files, and a discriminator tells them from clean LR largely by the
8×8 block grid and the ringing JPEG leaves (docs/history/quality-*.md: the discriminator probe). A convolutional
generator has no sense of position, so it cannot draw a grid; this stage draws it the way an encoder does.

What it computes, on images in [-1, 1] (the data range; 8-bit value v is v / 127.5 − 1): JFIF RGB → YCbCr,
4:2:0 chroma (2×2 mean), 8×8 DCT-II per block, division by the standard (IJG) luma/chroma tables scaled for the
quality q (IJG's rule: 5000 / q % below 50, 200 − 2q % from 50; no integer flooring), rounding, and the way back
(bilinear chroma upsampling, as decoders' "fancy upsampling"). The block grid sits at a random phase per call:
a real LR crop is cut at any offset from its file's grid. Rounding passes gradients through the cubic surrogate
r + (u − r)³ (forward exact), so the quality gets a gradient too. It is a parameter stored as q / `rate`: one Adam
step moves it by about lr × `rate` quality points (default 100: 0.02 points at lr 2e-4). Its clamp to [10, 100]
passes gradients straight through, so a quality pushed past an end can come back.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..jpeg_tables import CHROMA, LUMA

_RGB_TO_YCC = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
MCU = 16  # a 4:2:0 macroblock: the grid's period in pixels


def _dct_matrix() -> torch.Tensor:
    # built in float32 by torch (not from jpeg_tables.dct_matrix's float64): the stage's numbers stay those the
    # benchmark and the demo were measured with
    k, n = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    d = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


def _round_with_gradient(u: torch.Tensor) -> torch.Tensor:
    r = torch.round(u)
    soft = r + (u - r) ** 3
    return soft + (r - soft).detach()


class DifferentiableJPEG(nn.Module):
    """x in [-1, 1] → its JPEG, same shape: at a learned quality (initially `quality`), or with `quality` a range
    [low, high] at a quality drawn per image, uniformly in it, and not learned (e.g. the range measured on the
    real LR photos: `cyclesr data jpeg-quality`)."""

    def __init__(self, quality: float | list[float] = 90.0, rate: float = 100.0) -> None:
        super().__init__()
        is_range = isinstance(quality, list | tuple)
        bounds = list(quality) if is_range else [quality]
        if not (
            len(bounds) == (2 if is_range else 1)
            and all(not isinstance(q, bool) and isinstance(q, int | float) and 10 <= q <= 100 for q in bounds)
            and bounds == sorted(bounds)
        ):
            raise ValueError(
                f"JPEG quality must be a number in [10, 100] or a range [low, high] in it (or, in a training config, "
                f"auto: the range measured on the real LR), got {quality!r}"
            )
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise ValueError(f"JPEG quality rate must be a positive number, got {rate!r}")
        self.rate = float(rate)
        self.quality_range = (float(bounds[0]), float(bounds[1])) if is_range else None
        if self.quality_range is None:  # 1-D: DeepSpeed cannot flatten a 0-D parameter
            self.quality_fraction = nn.Parameter(torch.tensor([bounds[0] / self.rate]))
        self.register_buffer("dct", _dct_matrix(), persistent=False)
        self.register_buffer("tables", torch.tensor([LUMA, CHROMA], dtype=torch.float32), persistent=False)
        self.register_buffer("rgb_to_ycc", torch.tensor(_RGB_TO_YCC), persistent=False)
        self.register_buffer("ycc_to_rgb", torch.linalg.inv(self.rgb_to_ycc), persistent=False)

    def quality(self) -> torch.Tensor:
        """The learned quality (1 element)."""
        q = self.rate * self.quality_fraction
        return q + (q.clamp(10.0, 100.0) - q).detach()

    def _qualities(self, n: int, device: torch.device) -> torch.Tensor:
        if self.quality_range is None:
            return self.quality().expand(n)
        low, high = self.quality_range
        return (low + (high - low) * torch.rand(n)).to(device)

    # Eager under torch.compile: the random block offset changes the padded size (two per side), so with two
    # planes and two batch sizes (batched calls) the quantisation would need 16 graphs, past dynamo's limit of 8,
    # after which dynamo runs it eagerly anyway, having spent 8 compiles (measured: BENCHMARKS.md, roofline section).
    @torch.compiler.disable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 throughout: DCT coefficients reach ~1000, where bf16's 8-bit mantissa would add a rounding of its own
        # (the meta device, where FLOPs are counted, has no autocast to leave)
        off = torch.autocast(x.device.type, enabled=False) if x.device.type != "meta" else contextlib.nullcontext()
        with off:
            return self._jpeg(x)

    def _jpeg(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        top, left = (int(v) for v in torch.randint(0, MCU, (2,)))
        q = self._qualities(n, x.device).view(n, 1, 1, 1)
        scale = torch.where(q < 50, 50 / q, 2 - q / 50)  # IJG's percentage / 100
        tables = (self.tables * scale).clamp_min(1.0)  # (n, luma/chroma, 8, 8)
        bottom, right = (-(h + top)) % MCU, (-(w + left)) % MCU
        pixels = F.pad(x.float() * 127.5 - 0.5, (left, right, top, bottom), mode="replicate")  # 8-bit − 128
        ycc = torch.einsum("ij,njhw->nihw", self.rgb_to_ycc, pixels)
        luma = self._quantise(ycc[:, :1], tables[:, 0])
        chroma = self._quantise(F.avg_pool2d(ycc[:, 1:], 2), tables[:, 1])
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
        rgb = torch.einsum("ij,njhw->nihw", self.ycc_to_rgb, torch.cat([luma, chroma], 1))
        out = (rgb[..., top : top + h, left : left + w] + 0.5) / 127.5
        return out.clamp(-1.0, 1.0).to(x.dtype)

    def _quantise(self, plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        n, c, h, w = plane.shape
        blocks = plane.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)  # (..., 8 rows, 8 cols) per block
        coefficients = self.dct @ blocks @ self.dct.T
        table = table.view(n, 1, 1, 1, 8, 8)
        coefficients = _round_with_gradient(coefficients / table) * table
        blocks = self.dct.T @ coefficients @ self.dct
        return blocks.transpose(3, 4).reshape(n, c, h, w)
