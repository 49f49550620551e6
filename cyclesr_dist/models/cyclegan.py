"""CycleGAN translation networks (ResNet generator, PatchGAN discriminator), at LR resolution.

Activations after a norm are not in place (`layers.norm_layer` says why); the others are.
"""

from __future__ import annotations

import torch
from torch import nn

from ..torch_utils import filter2d, gaussian_kernel
from .jpeg import DifferentiableJPEG
from .layers import init_normal, norm_layer, upsample_x2
from .registry import DISCRIMINATORS, GENERATORS


class ResnetBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus the input; `padding` "reflect" (CycleGAN's) or "zero" (vega's)."""

    def __init__(self, channels: int, norm: str, padding: str = "reflect") -> None:
        super().__init__()
        if padding not in ("reflect", "zero"):
            raise ValueError(f"unknown block_padding {padding!r}; valid: reflect, zero")
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"  # a conv before BatchNorm needs no bias

        def conv() -> list[nn.Module]:
            if padding == "zero":
                return [nn.Conv2d(channels, channels, 3, padding=1, bias=use_bias)]
            return [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=use_bias)]

        self.block = nn.Sequential(*conv(), make_norm(channels), nn.ReLU(), *conv(), make_norm(channels))

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
    `noise_at="tail"` feeds them to the last 7×7 conv instead, at full resolution: pixel-level noise fed at the
    input has to survive the stride-2 downsampling, which it cannot, so the generator can only make blotches.
    `blur_kernel=k` (not in the reference, odd k) first convolves the image with one learned k×k kernel (every
    channel, DC gain 1, starting as the identity) and adds the residual to that: clean LR and real LR of the same
    photo differ mostly by such a linear filter (another blur, another sampling filter), which a stack of ReLU
    convolutions learns slowly and only approximately from an adversarial signal. `kernel_gain` scales how fast
    that filter moves (`LearnedKernel`). `input_blur=σ` (not in the reference, 0 = off) first blurs the image with a
    fixed Gaussian of σ LR pixels: a blur given, not learned (`input_blur: auto` in a training config: measured on
    the real LR, `cyclesr.measured`). `block_padding`
    "reflect" (CycleGAN's, default) or "zero" (vega's).
    `jpeg_quality=q` (not in the reference, 0 = off) ends with a differentiable JPEG at a learned quality starting
    at q (`DifferentiableJPEG`): the block grid a real LR file has and a convolution cannot place; one Adam step
    moves that quality by about lr × `jpeg_quality_rate` points. CycleSR gives both to G only
    (`cyclesr.networks.DEGRADING_ONLY`).
    `real_noise=True` (not in the reference) adds, before the JPEG stage, a crop of a patch drawn from
    `noise_bank`: mean-free patches of the real LR's flattest regions, set by the trainer from the user's photos
    (`set_noise_bank`; kept in checkpoints). A camera's noise is signal-dependent, spatially correlated and
    colour-mixed in ways per-pixel Gaussian channels only approximate; samples of it need no model (RealSR's noise
    injection). An empty bank adds nothing. `real_noise_at="after_jpeg"` adds it after the JPEG stage instead:
    the samples were cut from compressed files, so they already carry what compression left of the noise, which a
    second JPEG would quantise again.
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
        noise_at: str = "input",
        blur_kernel: int = 0,
        kernel_gain: float = 1.0,
        input_blur: float = 0.0,
        block_padding: str = "reflect",
        jpeg_quality: float = 0.0,
        jpeg_quality_rate: float = 100.0,
        real_noise: bool = False,
        real_noise_at: str = "before_jpeg",
    ) -> None:
        super().__init__()
        if isinstance(input_blur, bool) or not isinstance(input_blur, int | float) or input_blur < 0:
            raise ValueError(
                f"input_blur must be a Gaussian σ in LR pixels (0 = off; in a training config also auto: the blur "
                f"measured on the real LR), got {input_blur!r}"
            )
        self.input_blur = GaussianBlur(float(input_blur)) if input_blur else None
        self.blur = LearnedKernel(blur_kernel, kernel_gain) if blur_kernel else None
        self.jpeg = DifferentiableJPEG(jpeg_quality, jpeg_quality_rate) if jpeg_quality else None
        if noise_at not in ("input", "tail"):
            raise ValueError(f"unknown noise_at {noise_at!r}; valid: input, tail")
        if noise_channels < 0:
            raise ValueError(f"noise_channels must be >= 0, got {noise_channels}")
        input_noise, tail_noise = (noise_channels, 0) if noise_at == "input" else (0, noise_channels)
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels + input_noise, ngf, 7, bias=use_bias),
            make_norm(ngf),
            nn.ReLU(),
        ]
        for i in range(n_downsampling):
            ch = ngf * 2**i
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=use_bias), make_norm(ch * 2), nn.ReLU()]
        layers += [ResnetBlock(ngf * 2**n_downsampling, norm, block_padding) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            ch = ngf * 2**i
            layers += [*upsample_x2(ch, ch // 2, up_mode, use_bias), make_norm(ch // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf + tail_noise, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.multiple, self.residual = 2**n_downsampling, residual
        self.input_noise, self.tail_noise = input_noise, tail_noise
        self.noise_std = 1.0  # of the fed noise; 0 shows what the rest of the network does (a diagnostic's switch)
        self.real_noise = bool(real_noise)
        if real_noise_at not in ("before_jpeg", "after_jpeg"):
            raise ValueError(f"unknown real_noise_at {real_noise_at!r}; valid: before_jpeg, after_jpeg")
        self.real_noise_after_jpeg = real_noise_at == "after_jpeg"
        if self.real_noise:
            self.register_buffer("noise_bank", torch.zeros(0, out_channels, 1, 1))
        init_normal(self)
        if residual:
            last_conv = layers[-2]
            nn.init.zeros_(last_conv.weight)
            nn.init.zeros_(last_conv.bias)

    def _with_noise(self, t: torch.Tensor, channels: int) -> torch.Tensor:
        if not channels:
            return t
        n, _, h, w = t.shape
        noise = torch.randn(n, channels, h, w, device=t.device, dtype=t.dtype)
        return torch.cat([t, noise if self.noise_std == 1.0 else noise * self.noise_std], 1)

    def set_noise_bank(self, patches: torch.Tensor) -> None:
        """N×C×P×P mean-free noise samples on the model's scale ([-1, 1] images: twice the [0, 1] values)."""
        if not self.real_noise:
            raise ValueError("set_noise_bank: this generator was built without real_noise")
        self.noise_bank = patches.to(self.noise_bank.device, torch.float32).contiguous()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # the bank's size is the user's data's, not the config's: take the saved one's shape before loading it
        if self.real_noise and prefix + "noise_bank" in state_dict:
            self.noise_bank = torch.empty_like(state_dict[prefix + "noise_bank"], device=self.noise_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _real_noise(self, out: torch.Tensor) -> torch.Tensor:
        """A random patch of the bank per image, tiled to the image's size (a crop of it for a training crop) at
        one random offset for the batch."""
        n, _, h, w = out.shape
        bank = self.noise_bank
        size = bank.shape[-1]
        picked = bank[torch.randint(len(bank), (n,), device=bank.device)]
        tiled = picked.repeat(1, 1, -(-h // size) + 1, -(-w // size) + 1)
        dy, dx = (int(v) for v in torch.randint(size, (2,)))
        return tiled[:, :, dy : dy + h, dx : dx + w].to(out.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_blur is not None:
            x = self.input_blur(x)
        if self.blur is not None:
            x = self.blur(x)
        if self.tail_noise:  # the tail is the last three layers: pad, 7×7 conv, tanh
            out = self.model[-3:](self._with_noise(self.model[:-3](x), self.tail_noise))
        else:
            out = self.model(self._with_noise(x, self.input_noise))
        out = (x + out).clamp(-1.0, 1.0) if self.residual else out
        with_noise = self.real_noise and len(self.noise_bank)
        if with_noise and not self.real_noise_after_jpeg:
            out = (out + self._real_noise(out)).clamp(-1.0, 1.0)
        out = self.jpeg(out) if self.jpeg is not None else out
        if with_noise and self.real_noise_after_jpeg:
            out = (out + self._real_noise(out)).clamp(-1.0, 1.0)
        return out


@DISCRIMINATORS.register("patchgan")
class PatchDiscriminator(nn.Module):
    """PatchGAN: 4×4 convs with strides 2,…,2,1,1 (ndf·2^i channels, capped at 8·ndf), LeakyReLU 0.2.

    The reference's last conv has ndf output channels; this one has **one** by default (`head_channels`), as in
    CycleGAN/pix2pix: every output channel is an independent linear read-out of the same features compared against
    the same 0/1 target, so ndf of them add 0.5 M parameters and FLOPs without adding anything the LSGAN loss can
    use. `head_channels: ndf` is the reference's head (configs/vega.yaml).

    `high_pass=σ` (not in the reference) shows the discriminator only x − GaussianBlur_σ(x), the image's fine
    band: with small unpaired domains of different scenes a full-band discriminator tells the domains apart by
    content and colour and drives the generator to repaint them; the fine band is where a degradation (noise,
    blur, JPEG) lives (frequency separation, as in Fritsche et al. 2019, "DSGAN").
    `bands=[σ1, σ2, ...]` (not in the reference) generalises it: the discriminator sees the bands x − blur_σ1(x),
    blur_σ1(x) − blur_σ2(x), ... stacked as channels, still without the low band (content, colour). The fine band
    alone barely shows blur under noise; the band next to it is where a blurred edge differs from a sharp one.
    `high_pass=σ` is `bands=[σ]`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        high_pass: float = 0.0,
        bands: list[float] | None = None,
        head_channels: int = 1,
    ) -> None:
        super().__init__()
        if high_pass < 0:
            raise ValueError(f"high_pass is a blur σ in pixels (0 = off), got {high_pass}")
        if high_pass and bands:
            raise ValueError(f"give high_pass ({high_pass}) or bands ({bands}), not both: high_pass=σ is bands=[σ]")
        sigmas = list(bands or ([high_pass] if high_pass else []))
        self.bands = GaussianBands(sigmas) if sigmas else nn.Identity()
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        first = in_channels * max(1, len(sigmas))
        layers: list[nn.Module] = [nn.Conv2d(first, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=use_bias),
                make_norm(out),
                nn.LeakyReLU(0.2),
            ]
            ch = out
        if head_channels < 1:
            raise ValueError(f"head_channels must be at least 1, got {head_channels}")
        layers += [nn.Conv2d(ch, head_channels, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.bands(x))


class GaussianBlur(nn.Module):
    """Per-channel Gaussian blur, reflect-padded; the kernel is fixed (a non-persistent buffer)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel(sigma), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d(x, self.kernel)


class GaussianBands(nn.Module):
    """[x − blur_σ1(x), blur_σ1(x) − blur_σ2(x), ...] stacked as channels: a Laplacian-style decomposition without
    its low-pass remainder."""

    def __init__(self, sigmas: list[float]) -> None:
        super().__init__()
        if sorted(sigmas) != list(sigmas) or len(set(sigmas)) != len(sigmas):
            raise ValueError(f"band edges must increase, got {sigmas}")
        self.blurs = nn.ModuleList(GaussianBlur(s) for s in sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = [x] + [blur(x) for blur in self.blurs]
        return torch.cat([a - b for a, b in zip(levels, levels[1:], strict=False)], dim=1)


class LearnedKernel(nn.Module):
    """One learned k×k filter applied to every channel, reflect-padded, weights summing to 1 (brightness kept),
    starting as the identity: kernel = (δ + gain·Δ) / sum(δ + gain·Δ) with Δ = 0 at first, so it may also sharpen.
    `gain` scales how far one Adam step moves the kernel (Adam's step is about lr whatever the gradient's size):
    with the generators' lr of 2e-4 a blur needs taps of ~0.1, over a thousand steps of consistent gradient."""

    def __init__(self, size: int, gain: float = 1.0) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd size (e.g. 7), got {size}")
        self.gain = gain
        self.delta = nn.Parameter(torch.zeros(size, size))
        identity = torch.zeros(size, size)
        identity[size // 2, size // 2] = 1.0
        self.register_buffer("identity", identity, persistent=False)

    def kernel(self) -> torch.Tensor:
        k = self.identity + self.gain * self.delta
        return k / k.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d(x, self.kernel())
