"""G's `real_noise`: samples of the real LR's own noise (its flattest patches) added before G's JPEG stage, set by
the trainer from the user's photos and carried in checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cyclesr_dist.config import Config, load_config
from cyclesr_dist.cyclesr.networks import network_configs
from cyclesr_dist.cyclesr.spec import CycleSRSpec
from cyclesr_dist.data.images import save_rgb
from cyclesr_dist.errors import BadInput
from cyclesr_dist.models import build_network

ROOT = Path(__file__).resolve().parents[1]
G_ARGS = {"ngf": 4, "n_blocks": 1, "n_downsampling": 0, "residual": True, "real_noise": True}


def test_bank_noise_is_added_and_an_empty_bank_adds_nothing() -> None:
    g = build_network("generator", "resnet", G_ARGS)  # residual, last conv zero: the identity before training
    x = torch.rand(2, 3, 20, 44) * 0.5 - 0.25
    assert torch.equal(g(x), x)
    bank = torch.zeros(3, 3, 8, 8)
    bank[:, :, ::2, :] = 0.1  # stripes: every crop of a tiled patch is stripes of the same two values
    bank[:, :, 1::2, :] = -0.1
    g.set_noise_bank(bank)
    diff = g(x) - x
    assert diff.shape == x.shape
    assert torch.allclose(diff.abs(), torch.full_like(diff, 0.1), atol=1e-6)
    assert torch.allclose(diff[:, :, 1:] + diff[:, :, :-1], torch.zeros(1), atol=1e-6)  # alternating rows


def test_real_noise_after_jpeg_is_added_to_the_compressed_image() -> None:
    """real_noise_at: before_jpeg (default) compresses the bank's sample with the image; after_jpeg adds it to the
    compressed image, untouched. Same seed, same draws (JPEG grid phase, patch, offset) in the stage's order."""
    x = torch.rand(2, 3, 32, 32) * 0.5 - 0.25
    bank = torch.randn(4, 3, 8, 8) * 0.05
    g = {
        at: build_network("generator", "resnet", {**G_ARGS, "jpeg_quality": 60, "real_noise_at": at})
        for at in ("before_jpeg", "after_jpeg")
    }
    for net in g.values():
        net.set_noise_bank(bank)
    torch.manual_seed(0)
    noise = g["before_jpeg"]._real_noise(x)
    expected_before = g["before_jpeg"].jpeg(x + noise)
    torch.manual_seed(0)
    expected_after = g["after_jpeg"].jpeg(x)
    expected_after = expected_after + g["after_jpeg"]._real_noise(x)
    torch.manual_seed(0)
    got_before = g["before_jpeg"](x)
    torch.manual_seed(0)
    got_after = g["after_jpeg"](x)
    torch.testing.assert_close(got_before, expected_before)
    torch.testing.assert_close(got_after, expected_after)
    assert (got_after - got_before).abs().max() > 0.01  # the two orders differ
    with pytest.raises(ValueError, match="real_noise_at"):
        build_network("generator", "resnet", {**G_ARGS, "real_noise_at": "middle"})


def test_bank_travels_in_the_state_dict() -> None:
    g = build_network("generator", "resnet", G_ARGS)
    g.set_noise_bank(torch.randn(5, 3, 32, 32) * 0.02)
    fresh = build_network("generator", "resnet", G_ARGS)
    fresh.load_state_dict(g.state_dict())
    assert torch.equal(fresh.noise_bank, g.noise_bank)
    torch.manual_seed(0)
    a = g(torch.zeros(1, 3, 16, 16))
    torch.manual_seed(0)
    assert torch.equal(fresh(torch.zeros(1, 3, 16, 16)), a)


def _noisy_root(tmp_path: Path, sigma: float) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for i in range(3):
        hr = np.full((128, 160, 3), 120, np.uint8)
        save_rgb(hr, root / "hr" / f"{i}.png")
        lr = np.clip(110 + rng.normal(0, sigma, (64, 80, 3)), 0, 255).astype(np.uint8)
        save_rgb(lr, root / "real_lr" / f"{i}.png")
    return root


def _real_noise_config(root: Path) -> Config:
    """configs/demo.yaml on `root` with real_noise on and nothing else measured at start-up."""
    overrides = ["model.generator.args.real_noise=true", "model.generator.args.jpeg_quality=0"]
    return load_config(
        ROOT / "configs" / "demo.yaml", [f"data.root={root}", *overrides, "model.generator.args.input_blur=0"]
    )


def test_trainer_fills_g_bank_from_the_real_lr_and_f_has_none(tmp_path: Path) -> None:
    root = _noisy_root(tmp_path, 6.0)
    config = _real_noise_config(root)
    nets = CycleSRSpec(config).build_networks()
    bank = nets["gen_clean_to_real"].noise_bank
    assert bank.shape[1:] == (3, 32, 32) and len(bank) > 0
    # the photos' noise, on the model's [-1, 1] scale: σ 6 grey levels -> 6 / 127.5
    assert float(bank.std()) * 127.5 == pytest.approx(6.0, rel=0.15)
    assert "real_noise" not in network_configs(config.model)["gen_real_to_clean"]["args"]
    assert not hasattr(nets["gen_real_to_clean"], "noise_bank")


def test_real_lr_without_flat_regions_leaves_g_bank_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # σ 20 per channel everywhere (13 in luma): even the flattest patches are busier than NOISE_MAX_STD allows
    root = _noisy_root(tmp_path, 20.0)
    config = _real_noise_config(root)
    g = CycleSRSpec(config).build_networks()["gen_clean_to_real"]
    assert g.noise_bank.shape == (0, 3, 32, 32)
    assert "real_noise: off — only 0 32² patches of the real LR are flat" in capsys.readouterr().out
    x = torch.rand(1, 3, 24, 24) * 0.5 - 0.25
    torch.manual_seed(0)
    with_bank_off = g(x)
    g.real_noise = False
    torch.manual_seed(0)
    assert torch.equal(g(x), with_bank_off)


def test_real_lr_smaller_than_a_patch_leaves_g_bank_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    for i in range(2):
        save_rgb(np.full((64, 64, 3), 100, np.uint8), root / "hr" / f"{i}.png")
        save_rgb(np.full((16, 16, 3), 100, np.uint8), root / "real_lr" / f"{i}.png")
    config = _real_noise_config(root)
    assert CycleSRSpec(config).build_networks()["gen_clean_to_real"].noise_bank.shape == (0, 3, 32, 32)
    assert "real_noise: off — only 0 32² patches of the real LR are flat" in capsys.readouterr().out


def test_no_readable_real_lr_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save_rgb(np.full((64, 64, 3), 100, np.uint8), root / "hr" / "0.png")
    (root / "real_lr").mkdir(parents=True)  # empty
    with pytest.raises(BadInput, match=r"real_noise: found no readable real-LR image .*args\.real_noise to false$"):
        CycleSRSpec(_real_noise_config(root)).build_networks()
