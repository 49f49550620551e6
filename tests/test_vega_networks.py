"""configs/vega.yaml's networks are vega's: the project's generator, discriminator and SR net, built from the config,
against a literal transcription of vega's constructors (tests/vega_networks.py) at the reference widths: the same
parameter and buffer shapes in the same order, the same init distribution, and, with vega's weights copied in,
the same outputs in training and in eval mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import vega_networks as vega  # tests/ is on sys.path (rootdir conftest)

from cyclesr_dist.config import load_config
from cyclesr_dist.cyclesr import build_networks

VEGA_YAML = Path(__file__).resolve().parents[1] / "configs" / "vega.yaml"


def vega_nets() -> dict[str, torch.nn.Module]:
    """vega's networks as its CycleSR yml builds them (ngf = ndf = 64, 9 blocks, instance norm, transposed
    convolutions; VDSR 64 × 20 with BatchNorm, ×4), initialised by its `initialize`."""
    nets = {
        "generator": vega.Generator(3, 3, ngf=64, n_resblocks=9, norm_type="instance", up_mode="transpose"),
        "discriminator": vega.PatchDiscriminator(3, ndf=64, norm_type="instance"),
        "sr": vega.VDSR(3, 3, nf=64, nb=20, norm_type="batch", upscale=4),
    }
    for net in nets.values():
        net.apply(vega.init_w)
    return nets


def project_nets() -> dict[str, torch.nn.Module]:
    nets = build_networks(load_config(VEGA_YAML).model)
    return {"generator": nets["gen_clean_to_real"], "discriminator": nets["disc_clean"], "sr": nets["sr"]}


def shapes(net: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in net.state_dict().values()]


@pytest.mark.parametrize("name", ["generator", "discriminator", "sr"])
def test_same_layers_init_and_outputs_as_vega(name: str) -> None:
    torch.manual_seed(0)
    theirs = vega_nets()[name]
    ours = project_nets()[name]
    assert shapes(ours) == shapes(theirs)  # same parameters and buffers, in the same order

    # same init: conv weights N(0, 0.02), biases 0, BatchNorm weights N(1, 0.02)
    for (_, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        if a.numel() > 1000:
            assert a.mean().item() == pytest.approx(b.mean().item(), abs=2e-3)
            assert a.std().item() == pytest.approx(b.std().item(), rel=0.05)

    with torch.no_grad():
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            a.copy_(b)
    size = 32  # the discriminator's smallest comfortable input (three stride-2 and two 4×4 stride-1 convs)
    x = torch.rand(2, 3, size, size)
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5, msg=f"{name}, {mode} mode")
