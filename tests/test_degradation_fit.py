"""The degradation fitted without pairs (`cyclesr.degradation_fit`, `data.degrade.fitted`, `cyclesr data
fit-degradation`): the operator it makes, the noise patches, and a fit that tells a blurry real-LR pile from a sharp
one made of the same kind of photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from cyclesr_dist.cyclesr.degradation_fit import FitSettings, fit_degradation, kernel_width, noise_patches, save_fit
from cyclesr_dist.data.degrade import get_degradation
from cyclesr_dist.data.degrade.common import gaussian_2d, sample_grid, to_uint8
from cyclesr_dist.data.images import save_rgb
from cyclesr_dist.models.degradation import DownscaleKernel, kernel_size

ROOT = Path(__file__).resolve().parents[1]


def _photos() -> list[np.ndarray]:
    """Real photos scikit-image ships, cut to 256² tiles: the 'HR' pile and, degraded, the 'real LR' one."""
    tiles = []
    for img in (skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()):
        for top in range(0, img.shape[0] - 255, 256):
            for left in range(0, img.shape[1] - 255, 256):
                tiles.append(np.ascontiguousarray(img[top : top + 256, left : left + 256]))
    return tiles


def _blurred_lr(hr: np.ndarray, sigma: float) -> np.ndarray:
    kernel, t0 = gaussian_2d((sigma, sigma), 0.0, (0.5, 0.5))  # centred on bicubic's grid (1.5 = 1 + 0.5)
    return to_uint8(sample_grid(hr.astype(np.float32) / 255, kernel.astype(np.float32), (1 + t0, 1 + t0), 4))


def _fit_file(tmp_path: Path, kernel: np.ndarray, patches: np.ndarray, jpeg: list[int] | None) -> Path:
    fit = {"kernel": kernel, "noise": (0.0, 0.0), "jpeg": jpeg, "noise_patches": patches, "scale": 4}
    return save_fit(fit, tmp_path / "fit.npz")


def test_fitted_operator_is_the_kernel_on_bicubics_grid_then_noise_and_jpeg(tmp_path: Path) -> None:
    """A 4×4 box kernel in the middle of the 20×20 taps, no noise patch, no JPEG: each LR pixel is the mean of its
    4×4 HR cell (bicubic's grid: LR pixel i centred at HR 4i + 1.5). With noise patches and a JPEG range it
    differs from that by noise, deterministically per seed."""
    box = np.zeros((20, 20), np.float32)
    box[8:12, 8:12] = 1 / 16
    hr = _photos()[0][:96, :128]
    cells = hr.astype(np.float64).reshape(24, 4, 32, 4, 3).mean(axis=(1, 3))
    op = get_degradation(f"fitted:{_fit_file(tmp_path, box, np.zeros((0, 32, 32, 3)), None)}").degrade
    lr = op(hr, np.random.default_rng(0), 4)
    assert lr.shape == (24, 32, 3) and lr.dtype == np.uint8
    assert np.abs(lr.astype(np.float64) - cells).max() <= 0.5 + 1e-9
    patches = np.random.default_rng(1).normal(0, 4 / 255, (5, 32, 32, 3)).astype(np.float32)
    noisy = get_degradation(f"fitted:{_fit_file(tmp_path, box, patches, [70, 80])}").degrade
    a, b = noisy(hr, np.random.default_rng(3), 4), noisy(hr, np.random.default_rng(3), 4)
    np.testing.assert_array_equal(a, b)
    assert 2.0 < (a.astype(np.float64) - cells).std() < 8.0
    with pytest.raises(ValueError, match="was fitted for ×4, not ×2"):
        noisy(hr, np.random.default_rng(0), 2)


def test_a_file_that_is_not_a_fit_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"x.npz is not a fitted degradation file \(cyclesr data fit-degradation\)"):
        get_degradation(f"fitted:{tmp_path / 'x.npz'}")


def test_noise_patches_are_the_flattest_regions_without_their_mean() -> None:
    """An image half flat with noise of σ 3 grey levels, half textured: the patches come from the flat half and
    carry its noise, mean-free."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 3, (128, 256, 3)), 0, 255).astype(np.uint8)
    img[:, 128:] = rng.integers(0, 256, (128, 128, 3))
    patches = noise_patches([img], size=32)
    assert patches.shape[1:] == (32, 32, 3) and len(patches) >= 1
    assert abs(patches.std() * 255 - 3.0) < 0.5
    np.testing.assert_allclose(patches.mean(axis=(1, 2)), 0, atol=1e-5)  # float32 sums


def test_kernel_module_matches_the_fitted_operators_grid() -> None:
    """The training-time kernel (torch, reflect-padded) and the operator (numpy `sample_grid`) put LR pixels at
    the same HR positions."""
    assert kernel_size(4) == 20
    module = DownscaleKernel(4, sigma=1.3)
    hr = _photos()[1][:64, :64]
    with torch.no_grad():
        ours = module(torch.from_numpy(hr.astype(np.float32) / 255).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    theirs = sample_grid(hr.astype(np.float32) / 255, module.kernel().detach().numpy(), (-8, -8), 4)
    np.testing.assert_allclose(ours.numpy()[3:-3, 3:-3], theirs[3:-3, 3:-3], atol=1e-5)  # borders: padding differs


@pytest.mark.slow
def test_the_fit_finds_the_blurrier_pile_blurrier() -> None:
    """Two real-LR piles from the same photos, one through a Gaussian of σ 2.2 HR px, one of σ 0.8, fitted against
    the same HR pile: the first kernel comes out wider, each within reach of its truth."""
    photos = _photos()
    hr, lr_photos = photos[::2], photos[1::2]
    settings = FitSettings(steps=200, batch=8, lr_crop=24, seed=0)
    widths = {}
    for sigma in (0.8, 2.2):
        real = [_blurred_lr(p, sigma) for p in lr_photos]
        widths[sigma] = kernel_width(fit_degradation(hr, real, 4, settings, log=None)["kernel"])
    assert widths[2.2] > widths[0.8] + 0.4, widths
    assert 1.4 < widths[2.2] < 3.0, widths


@pytest.mark.slow
def test_cli_fits_and_training_reads_the_file(tmp_path: Path, demo_data: Path) -> None:
    out = tmp_path / "fit.npz"
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "data", "fit-degradation", "--hr", str(demo_data / "hr")]
    cmd += ["--lr", str(demo_data / "real_lr"), "--out", str(out), "--steps", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and f"data.hr_to_lr=fitted:{out}" in proc.stdout and "kernel width" in proc.stdout
    op = get_degradation(f"fitted:{out}").degrade
    assert op(_photos()[0][:64, :64], np.random.default_rng(0), 4).shape == (16, 16, 3)
    save_rgb(_photos()[0], tmp_path / "unused.png")  # the CLI reads folders; a stray file elsewhere is not read
    train = [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", "configs/demo.yaml"]
    train += [f"data.root={demo_data}", f"output_dir={tmp_path / 'run'}", "wandb.mode=disabled", "max_steps=3"]
    train += [
        "data.num_workers=0",
        "stages.sr_pretrain_epoch=1",
        "stages.joint_epoch=1000",
        f"data.hr_to_lr=fitted:{out}",
    ]
    proc = subprocess.run(train, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = subprocess.run(
        [*cmd[:-4], "--lr", str(tmp_path / "nothing"), "--out", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "image folder not found" in bad.stderr and "Traceback" not in bad.stderr
