"""Networks at the reference config: parameter counts derived by hand, shapes, registry behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cyclesr_dist.config import load_config
from cyclesr_dist.cyclesr import build_networks
from cyclesr_dist.errors import UserError
from cyclesr_dist.models import DISCRIMINATORS, GENERATORS, SR_NETS

ROOT = Path(__file__).resolve().parents[1]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def test_resnet_generator_parameter_count():
    # ngf=64, instance norm without affine (so convs keep their bias), 2 downsamplings, 9 blocks, transpose ups.
    expected = (
        conv(3, 64, 7)
        + conv(64, 128, 3)
        + conv(128, 256, 3)
        + 9 * 2 * conv(256, 256, 3)
        + conv(256, 128, 3)  # ConvTranspose2d(256->128): same count as a conv
        + conv(128, 64, 3)
        + conv(64, 3, 7)
    )
    assert expected == 11_378_179
    assert n_params(GENERATORS.build("resnet")) == expected


def test_patchgan_parameter_count():
    # 4×4 convs 3->64 (s2), 64->128 (s2), 128->256 (s2), 256->512 (s1), 512->1 (s1); one output channel.
    expected = conv(3, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 4)
    assert expected == 2_764_737
    assert n_params(DISCRIMINATORS.build("patchgan")) == expected


def test_lr_space_vdsr_parameter_count():
    # head 3->64, 20 body convs + 1 LR conv at 64->64, two pixel-shuffle convs 64->256, HR conv 64->64, 64->3.
    no_norm = conv(3, 64, 3) + 21 * conv(64, 64, 3) + 2 * conv(64, 256, 3) + conv(64, 64, 3) + conv(64, 3, 3)
    assert no_norm == 1_111_363
    assert n_params(SR_NETS.build("vdsr_lr")) == no_norm
    # batch norm adds weight+bias (2×64) after each of the 21 body convs
    assert n_params(SR_NETS.build("vdsr_lr", {"norm": "batch"})) == no_norm + 21 * 2 * 64


def test_srresnet_parameter_count():
    # 9×9 head + PReLU(64); 16 blocks of two convs + two BN + PReLU(64); conv+BN; 2 shuffle convs + PReLU; 9×9 tail.
    block = 2 * conv(64, 64, 3) + 2 * 128 + 64
    expected = conv(3, 64, 9) + 64 + 16 * block + conv(64, 64, 3) + 128 + 2 * (conv(64, 256, 3) + 64) + conv(64, 3, 9)
    assert n_params(SR_NETS.build("srresnet")) == expected


@pytest.mark.parametrize("up_mode", ["transpose", "pixelshuffle", "resize"])
def test_shapes(up_mode):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "up_mode": up_mode})
    out = g(x)
    assert out.shape == x.shape and out.abs().max() <= 1
    assert DISCRIMINATORS.build("patchgan", {"ndf": 8})(x).shape == (2, 1, 2, 2)
    for name in SR_NETS.names():
        assert SR_NETS.build(name, {"nf": 8, "nb": 1})(x).shape == (2, 3, 128, 128)


def test_weight_init_is_normal_002():
    g = GENERATORS.build("resnet")
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3


def test_registry_errors_name_the_problem():
    with pytest.raises(UserError, match="unknown super-resolution network 'nope'.*srresnet.*vdsr_lr"):
        SR_NETS.build("nope")
    with pytest.raises(UserError, match=r"unknown argument\(s\) \['nblocks'\]; valid: .*nb"):
        SR_NETS.build("vdsr_lr", {"nblocks": 3})


def test_a_new_sr_net_is_one_class_and_one_registry_entry():
    @SR_NETS.register("test_bicubic_plus_conv")
    class BicubicPlusConv(nn.Module):
        def __init__(self, upscale: int = 4) -> None:
            super().__init__()
            self.upscale = upscale
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            up = nn.functional.interpolate(x, scale_factor=self.upscale, mode="bicubic")
            return up + self.conv(up)

    try:
        config = load_config(None, ["model.sr.name=test_bicubic_plus_conv", "model.sr.args={}"])
        nets = build_networks(config.model)
        assert isinstance(nets["sr"], BicubicPlusConv)
        assert nets["sr"](torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    finally:
        SR_NETS._entries.pop("test_bicubic_plus_conv")


@pytest.mark.parametrize("name", ["vdsr_lr", "srresnet"])
def test_bicubic_skip_adds_exactly_the_bicubic_upsampling(name):
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    plain = SR_NETS.build(name, {"nf": 8, "nb": 1})
    skip = SR_NETS.build(name, {"nf": 8, "nb": 1, "bicubic_skip": True})
    skip.load_state_dict(plain.state_dict())  # the option adds no parameters
    plain.eval(), skip.eval()
    bicubic = nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(skip(x), plain(x) + bicubic)


def test_residual_generator_starts_as_the_identity_and_learns():
    x = torch.rand(2, 3, 16, 16) * 1.8 - 0.9
    g = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "residual": True})
    torch.testing.assert_close(g(x), x)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    target = x.flip(-1)
    losses = []
    for _ in range(20):
        loss = nn.functional.l1_loss(g(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]  # the zero-initialised tail does not block learning
    assert n_params(g) == n_params(GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1}))


@pytest.mark.parametrize("noise_at, fed_to_channels", [("input", 8), ("tail", 3)])
def test_noise_channels_make_the_generator_stochastic_and_seedable(noise_at, fed_to_channels):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    g = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "noise_channels": 2, "noise_at": noise_at})
    torch.manual_seed(0)
    a = g(x)
    b = g(x)
    torch.manual_seed(0)
    assert not torch.allclose(a, b) and torch.equal(g(x), a)
    g.noise_std = 0.0  # the diagnostics' switch: the same network with its noise off is deterministic
    assert torch.equal(g(x), g(x)) and not torch.allclose(g(x), a)
    # the 7×7 conv that takes them (head: ngf outputs; tail: 3 outputs) has 2 more input channels
    added = n_params(g) - n_params(GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1}))
    assert added == 2 * fed_to_channels * 7 * 7


def test_tail_noise_is_white_at_full_resolution():
    """Tail noise reaches the output pixel by pixel; input noise has to pass the stride-2 downsampling."""
    torch.manual_seed(0)
    g = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "noise_channels": 1, "noise_at": "tail"})
    tail = g.model[-2]
    with torch.no_grad():  # make the tail pass its noise channel straight through (centre tap only)
        tail.weight.zero_()
        tail.bias.zero_()
        tail.weight[:, -1, 3, 3] = 0.1
    x = torch.zeros(1, 3, 64, 64)
    out = g(x) - g(x)  # two noise draws
    lag1 = (out[..., 1:] * out[..., :-1]).mean() / out.pow(2).mean()
    assert out.std() > 0.1 and abs(lag1) < 0.05  # neighbouring pixels uncorrelated


def test_unknown_noise_placement_and_negative_sizes_are_refused():
    with pytest.raises(ValueError, match="noise_at"):
        GENERATORS.build("resnet", {"noise_channels": 1, "noise_at": "middle"})
    with pytest.raises(ValueError, match="noise_channels"):
        GENERATORS.build("resnet", {"noise_channels": -1})
    with pytest.raises(ValueError, match="high_pass"):
        DISCRIMINATORS.build("patchgan", {"high_pass": -1.0})


def test_high_pass_discriminator_ignores_colour_and_sees_noise():
    """With `high_pass` a global colour shift is invisible to PatchGAN (it judges the fine band only)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 1.2 - 0.6
    shifted = x + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    plain = DISCRIMINATORS.build("patchgan", {"ndf": 8, "n_layers": 2})
    band = DISCRIMINATORS.build("patchgan", {"ndf": 8, "n_layers": 2, "high_pass": 1.0})
    with torch.no_grad():
        assert not torch.allclose(plain(x), plain(shifted), atol=1e-4)
        assert torch.allclose(band(x), band(shifted), atol=1e-5)
        assert not torch.allclose(band(x), band(x + 0.05 * torch.randn_like(x)), atol=1e-4)
    assert n_params(band) == n_params(plain) and not band.state_dict().keys() - plain.state_dict().keys()


def test_band_discriminator_sees_the_band_next_to_the_finest_and_still_ignores_colour():
    from cyclesr_dist.models.cyclegan import GaussianBands, GaussianBlur

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 1.2 - 0.6
    bands = GaussianBands([1.0, 2.0])
    out = bands(x)
    assert out.shape == (2, 6, 32, 32)
    # the bands add up to everything above the last edge (a telescoping sum)
    torch.testing.assert_close(out[:, :3] + out[:, 3:], x - GaussianBlur(2.0)(x))
    two = DISCRIMINATORS.build("patchgan", {"ndf": 8, "n_layers": 2, "bands": [1.0, 2.0]})
    shifted = x + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(two(x), two(shifted), atol=1e-5)
    # Under noise, a further blur of σ 1.5 is hard to see in the finest band (noise fills it) and plain in the next
    smooth = GaussianBlur(1.0)(x)
    noisy = [img + 0.05 * torch.randn_like(img) for img in (smooth, GaussianBlur(1.5)(smooth))]
    sharp, blurred = bands(noisy[0]), bands(noisy[1])
    fine_kept = blurred[:, :3].pow(2).mean() / sharp[:, :3].pow(2).mean()
    mid_kept = blurred[:, 3:].pow(2).mean() / sharp[:, 3:].pow(2).mean()
    assert mid_kept < 0.6 * fine_kept
    with pytest.raises(ValueError, match="not both"):
        DISCRIMINATORS.build("patchgan", {"high_pass": 1.0, "bands": [1.0, 2.0]})
    with pytest.raises(ValueError, match="must increase"):
        DISCRIMINATORS.build("patchgan", {"bands": [2.0, 1.0]})


def test_learned_kernel_generator_starts_as_the_identity_and_learns_a_blur():
    from cyclesr_dist.models.cyclegan import GaussianBlur

    torch.manual_seed(0)
    x = torch.rand(4, 3, 24, 24) * 1.8 - 0.9
    g = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "n_downsampling": 0, "residual": True, "blur_kernel": 7})
    torch.testing.assert_close(g(x), x)  # identity kernel + zero-initialised residual
    target = GaussianBlur(1.2)(x)
    opt = torch.optim.Adam(g.blur.parameters(), lr=2e-2)
    losses = []
    for _ in range(60):
        loss = nn.functional.mse_loss(g(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    kernel = g.blur.kernel().detach()
    assert abs(kernel.sum().item() - 1) < 1e-6 and kernel[3, 3] < 0.5  # spread out like the target blur
    assert n_params(g) == n_params(GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "n_downsampling": 0})) + 49
    with pytest.raises(ValueError, match="odd"):
        GENERATORS.build("resnet", {"blur_kernel": 4})


def test_spectrum_loss_teaches_a_kernel_the_blur_of_unrelated_images():
    """The spectral term compares batch-mean spectra of *different* images: it must still tell a blurred
    distribution from a sharp one, and drive a LearnedKernel (gain 10, the generators' lr) toward the blur."""
    from cyclesr_dist.cyclesr.losses import spectrum_loss
    from cyclesr_dist.models.cyclegan import GaussianBlur, LearnedKernel

    torch.manual_seed(0)
    blur = GaussianBlur(1.0)

    def batch() -> torch.Tensor:
        return torch.rand(8, 3, 24, 24) * 2 - 1

    sharp_vs_sharp = spectrum_loss(batch(), batch()).item()
    sharp_vs_blurred = spectrum_loss(batch(), blur(batch())).item()
    assert sharp_vs_blurred > 20 * sharp_vs_sharp
    kernel = LearnedKernel(7, gain=10.0)
    opt = torch.optim.Adam(kernel.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(300):
        loss = spectrum_loss(kernel(batch()), blur(batch()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * sharp_vs_blurred
    assert kernel.kernel()[3, 3] < 0.5  # spread out, from the identity's 1.0


def test_reference_shape_options_head_channels_and_zero_padded_blocks():
    """vega's PatchGAN head has ndf output channels and its residual blocks pad with zeros (configs/vega.yaml)."""
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    one = DISCRIMINATORS.build("patchgan", {"ndf": 8, "n_layers": 3})
    wide = DISCRIMINATORS.build("patchgan", {"ndf": 8, "n_layers": 3, "head_channels": 8})
    assert one(x).shape[1] == 1 and wide(x).shape[1] == 8 and wide(x).shape[2:] == one(x).shape[2:]
    args = {"ngf": 8, "n_blocks": 2, "n_downsampling": 0, "norm": "none"}  # no norm: a border stays local
    reflect = GENERATORS.build("resnet", args)
    zero = GENERATORS.build("resnet", {**args, "block_padding": "zero"})
    assert not any(
        isinstance(m, nn.ReflectionPad2d)
        for b in zero.modules()
        if b.__class__.__name__ == "ResnetBlock"
        for m in b.modules()
    )
    assert n_params(zero) == n_params(reflect)
    with torch.no_grad():  # same weights (in the same order), different border handling
        for a, b in zip(zero.parameters(), reflect.parameters(), strict=True):
            a.copy_(b)
    with torch.no_grad():
        diff = (zero(x) - reflect(x)).abs()
    assert diff[..., 8:-8, 8:-8].max() < 1e-5 < diff.max()  # differs only near the borders
    with pytest.raises(ValueError, match="block_padding"):
        GENERATORS.build("resnet", {**args, "block_padding": "circular"})


@pytest.mark.parametrize("quality", [50, 90])
def test_differentiable_jpeg_matches_pillows_jpeg_at_its_grid_phase(quality):
    """Forward, the stage is JPEG: at the block-grid phase it draws, its output is within rounding of Pillow's
    encoder+decoder on the same (edge-padded) image, much closer than JPEG's own change of the image."""
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    from cyclesr_dist.data.images import model_to_uint8, uint8_to_model
    from cyclesr_dist.models.jpeg import MCU, DifferentiableJPEG

    img = data.astronaut()[100:220, 90:222]  # 120 × 132: not a multiple of the grid
    torch.manual_seed(0)
    top, left = (int(v) for v in torch.randint(0, MCU, (2,)))
    torch.manual_seed(0)
    ours = model_to_uint8(DifferentiableJPEG(quality)(uint8_to_model(img).unsqueeze(0))[0])
    pad = ((top, -(img.shape[0] + top) % MCU), (left, -(img.shape[1] + left) % MCU), (0, 0))
    buf = io.BytesIO()
    Image.fromarray(np.pad(img, pad, mode="edge")).save(buf, "JPEG", quality=quality)
    pillow = np.asarray(Image.open(buf))[top : top + img.shape[0], left : left + img.shape[1]]

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))

    assert psnr(pillow, img) < 38  # JPEG changed the image noticeably
    assert psnr(ours, pillow) > psnr(pillow, img) + 5


def test_jpeg_stage_learns_its_quality_sits_in_g_only_and_needs_the_8_bit_range():
    from torch.utils.flop_counter import FlopCounterMode

    from cyclesr_dist.config import ConfigError
    from cyclesr_dist.cyclesr.networks import network_configs
    from cyclesr_dist.models.jpeg import DifferentiableJPEG

    gen = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "residual": True, "jpeg_quality": 80})
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    out = gen(x)
    assert out.shape == x.shape and not torch.allclose(out, x, atol=1e-3)  # the residual starts at 0, JPEG does not
    (out - x).square().mean().backward()
    assert gen.jpeg.quality_fraction.grad is not None and gen.jpeg.quality_fraction.grad < 0  # higher q: closer
    with torch.no_grad():  # under bf16 autocast the stage still computes in fp32 (bf16 would round the DCT itself)
        torch.manual_seed(1)
        full = gen.jpeg(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(1)
            assert torch.equal(gen.jpeg(x), full)
    with FlopCounterMode(display=False) as counter:  # and on the meta device, where the roofline counts FLOPs
        assert gen.to("meta")(x.to("meta")).shape == x.shape
    assert counter.get_total_flops() > 0
    # one Adam step moves the quality by about lr × rate points; past 100 it computes at 100 and can come back
    for rate in (100.0, 1000.0):
        stage = DifferentiableJPEG(90, rate)
        adam = torch.optim.Adam(stage.parameters(), lr=2e-4)
        (stage(x) - x).square().mean().backward()
        adam.step()
        assert stage.quality().item() == pytest.approx(90 + 2e-4 * rate, rel=1e-4)
    with torch.no_grad():
        stage.quality_fraction.fill_(101 / rate)
    torch.manual_seed(1)
    clamped = stage(x)
    torch.manual_seed(1)
    assert stage.quality().item() == 100 and torch.equal(clamped, DifferentiableJPEG(100)(x))
    (clamped - x).square().mean().backward()
    assert stage.quality_fraction.grad < 0
    with pytest.raises(ValueError, match="rate must be a positive number"):
        DifferentiableJPEG(90, 0)
    # only the degrading direction gets it, in the network and in what a checkpoint records
    config = load_config(None, ["model.generator.args.jpeg_quality=90", "model.generator.args.jpeg_quality_rate=500"])
    nets = build_networks(config.model)
    assert nets["gen_clean_to_real"].jpeg is not None and nets["gen_real_to_clean"].jpeg is None
    recorded = network_configs(config.model)
    assert "jpeg_quality" in recorded["gen_clean_to_real"]["args"]
    assert recorded["gen_clean_to_real"]["args"]["jpeg_quality_rate"] == 500
    assert not {"jpeg_quality", "jpeg_quality_rate"} & set(recorded["gen_real_to_clean"]["args"])
    with pytest.raises(ConfigError, match="jpeg_quality works on 8-bit values mapped to"):
        load_config(None, ["model.generator.args.jpeg_quality=90", "data.value_range=[0, 1]"])


def test_input_blur_is_a_fixed_gaussian_in_the_degrading_generator_only():
    import torch.nn.functional as F

    from cyclesr_dist.cyclesr.networks import network_configs
    from cyclesr_dist.torch_utils import gaussian_kernel

    args = {"ngf": 8, "n_blocks": 1, "n_downsampling": 0, "residual": True, "input_blur": 0.5}
    gen = GENERATORS.build("resnet", args)
    x = torch.rand(1, 3, 20, 20) * 2 - 1
    kernel = gaussian_kernel(0.5).to(x)  # a zero-initialised residual: G starts as exactly that blur
    padded = F.pad(x, [kernel.shape[-1] // 2] * 4, mode="reflect")
    expected = F.conv2d(padded, kernel[None, None].expand(3, 1, -1, -1), groups=3)
    assert torch.allclose(gen(x), expected.clamp(-1, 1), atol=1e-6)
    assert not any("input_blur" in name for name, _ in gen.named_parameters())  # given, not learned
    config = load_config(None, ["model.generator.args.input_blur=0.5"])
    nets = build_networks(config.model)
    assert nets["gen_clean_to_real"].input_blur is not None and nets["gen_real_to_clean"].input_blur is None
    assert "input_blur" not in network_configs(config.model)["gen_real_to_clean"]["args"]
    with pytest.raises(ValueError, match="input_blur must be a Gaussian σ in LR pixels"):
        GENERATORS.build("resnet", {**args, "input_blur": -1})


@pytest.mark.parametrize("path", ["configs/cyclesr.yaml", "configs/vega.yaml"])
def test_backward_copies_no_activation_gradients(path):
    """No activation works in place on a norm's output: InstanceNorm returns a view, and an in-place op on a view
    makes autograd copy each such gradient in the backward (a quarter of the step's bytes at the reference config).
    Counted on the meta device: no compute."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CopyCounter(TorchDispatchMode):
        copies = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            self.copies += func is torch.ops.aten.copy_.default
            return func(*args, **(kwargs or {}))

    model = load_config(ROOT / path).model
    with torch.device("meta"):
        nets = [
            # the measured stages (`auto`: a JPEG, an input blur) are set when training starts; left out here
            GENERATORS.build(model.generator.name, {k: v for k, v in model.generator.args.items() if v != "auto"}),
            DISCRIMINATORS.build(model.discriminator.name, model.discriminator.args),
            SR_NETS.build(model.sr.name, model.sr.args),
        ]
    for net in nets:
        x = torch.randn(2, 3, 24, 24, device="meta", requires_grad=True)
        counter = CopyCounter()
        with counter:
            net(x).sum().backward()
        assert counter.copies == 0, (type(net).__name__, counter.copies)
