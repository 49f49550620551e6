"""The loss pieces of the joint step and the gradient-routing helpers it needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..torch_utils import filter2d


def gan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (MSE against a 1/0 target)."""
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Batch-mean log power spectrum (H × W//2+1) of images, each channel's mean removed and Hann-windowed (so the
    patch border adds no spurious high band), normalised to unit total power (so scene contrast does not count)."""
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False)).to(x)
    power = torch.fft.rfft2(x * window).abs().square()
    power = power / power.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return torch.log(power.mean(dim=(0, 1)) + 1e-8)


def spectrum_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared distance between the batch-mean log power spectra of G(x) and of real LR crops.

    A blur, another sampling filter or a noise floor changes the *average* spectrum of every image the same way,
    whatever the scene; so averaged over a batch of unrelated crops, the ratio of the two spectra is the
    degradation's squared frequency response. This is a direct, non-adversarial signal for exactly the part of the
    degradation a discriminator on small patches picks up slowly; it says nothing about phase (a grid shift),
    which unpaired data cannot identify anyway."""
    return (log_spectrum(fake) - log_spectrum(real).detach()).square().mean()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back, and with a `kernel` filters it
    (every channel, reflect-padded) so that only its low band goes on."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float | torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:  # noqa: ANN001
        ctx.scale, ctx.kernel = scale, kernel
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        if ctx.kernel is not None:
            grad = filter2d(grad, ctx.kernel)
        return grad * ctx.scale, None, None


def scale_grad(x: torch.Tensor, scale: float | torch.Tensor, low_pass: torch.Tensor | None = None) -> torch.Tensor:
    """`x` itself; the gradient that flows back through it is multiplied by `scale` (a tensor scale is not read
    on the host: the step does not wait for the device) and, given a `low_pass` kernel, blurred by it."""
    plain = isinstance(scale, float | int) and scale == 1.0 and low_pass is None
    return x if plain else _ScaleGrad.apply(x, scale, low_pass)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)
