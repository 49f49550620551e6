"""The degradation operators (`cyclesr_dist.data.degrade`) and `metrics.translation_metrics`.

Each operator is checked for its contract (shape, dtype, determinism, errors) and for the one thing that makes it
what it is, with a test that an identity, a plain bicubic or a broken parameter draw would fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata

from cyclesr_dist.data.degrade import (
    DEGRADATIONS,
    Degradation,
    degrade_blur,
    degrade_camera,
    degrade_downscale_motion,
    degrade_noise_jpeg,
    degrade_phone,
    degrade_real,
    degrade_resize_chain,
    degrade_webcam,
    get_degradation,
    usm_sharpen,
)
from cyclesr_dist.data.degrade import realesrgan as D
from cyclesr_dist.data.degrade.pipelines import deblock
from cyclesr_dist.data.images import bicubic_resize, clean_downscale, model_to_uint8, uint8_to_model
from cyclesr_dist.metrics import translation_metrics

OPERATORS = ["blur", "noise_jpeg", "camera", "downscale_motion", "realesrgan", "resize_chain", "phone", "webcam"]
# continuous phase, `phase=(dy, dx)` HR px
PHASED = ["blur", "camera", "downscale_motion", "resize_chain", "phone", "webcam"]
QUIET = {  # the noise of each phased operator off
    "blur": {"noise": 0.0},
    "camera": {"shot": 1e-9, "read": 0.0},
    "downscale_motion": {"noise": 0.0},
    "resize_chain": {"noise": 0.0, "quality1": 95},
    "phone": {"shot": 1e-9, "read": 0.0},
    "webcam": {"noise": 0.0, "aberration": 0.0},
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut), 512x512."""
    return skdata.astronaut()


def _bicubic(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    return model_to_uint8(clean_downscale(uint8_to_model(hr), scale))


def _laplacian_energy(img: np.ndarray) -> float:
    """Mean squared 5-point Laplacian of the grey image, away from the border: high-frequency energy."""
    g = img.astype(np.float64).mean(axis=-1)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap[2:-2, 2:-2] ** 2).mean())


def _ramp(h: int = 192, w: int = 128, slope: float = 0.9) -> np.ndarray:
    """Grey image whose value rises by `slope` per HR row: a sampling shift dy shows up as slope·dy. A faint
    rise along x (0.05 per column) varies the 8-bit rounding between columns, so its bias averages out."""
    ramp = 30 + slope * np.arange(h)[:, None] + 0.05 * np.arange(w)[None, :]
    return np.repeat(np.rint(ramp)[..., None], 3, 2).astype(np.uint8)


def _interior_mean(lr: np.ndarray, border: int = 6) -> float:
    return float(lr[border:-border, border:-border].astype(np.float64).mean())


# ------------------------------------------------------------------------------------------------- the contract


def test_registry_holds_the_operators_by_name() -> None:
    assert list(DEGRADATIONS) == OPERATORS
    for name, d in DEGRADATIONS.items():
        assert isinstance(d, Degradation) and d.name == name and callable(d.degrade)
        assert get_degradation(name) is d
    assert [n for n, d in DEGRADATIONS.items() if d.sharpen_target] == ["realesrgan"]


def test_get_degradation_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown degradation 'bicubic'; valid: blur, noise_jpeg, camera, "):
        get_degradation("bicubic")


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("scale, shape", [(4, (96, 96)), (4, (120, 200)), (4, (480, 480)), (2, (64, 98))])
def test_shape_and_dtype(photo: np.ndarray, name: str, scale: int, shape: tuple[int, int]) -> None:
    hr = np.ascontiguousarray(photo[: shape[0], : shape[1]])
    lr = get_degradation(name).degrade(hr, np.random.default_rng(0), scale)
    assert lr.dtype == np.uint8 and lr.shape == (shape[0] // scale, shape[1] // scale, 3)
    assert lr.flags["C_CONTIGUOUS"] or lr.flags["F_CONTIGUOUS"]


@pytest.mark.parametrize("name", OPERATORS)
def test_deterministic_per_seed_and_random_across_seeds(photo: np.ndarray, name: str) -> None:
    hr = np.ascontiguousarray(photo[100:228, 200:328])
    op = get_degradation(name).degrade
    a, b = op(hr, np.random.default_rng(7), 4), op(hr, np.random.default_rng(7), 4)
    np.testing.assert_array_equal(a, b)
    others = [op(hr, np.random.default_rng(s), 4) for s in (8, 9)]
    assert all(not np.array_equal(a, o) for o in others)


@pytest.mark.parametrize("name", OPERATORS)
def test_refuses_bad_input(photo: np.ndarray, name: str) -> None:
    op = get_degradation(name).degrade
    with pytest.raises(ValueError, match="multiples of scale"):
        op(np.ascontiguousarray(photo[:98, :96]), np.random.default_rng(0), 4)
    with pytest.raises(TypeError, match="unknown fixed parameter"):
        op(np.ascontiguousarray(photo[:96, :96]), np.random.default_rng(0), 4, not_a_parameter=1)


def test_target_is_the_usm_for_the_blind_recipe_only(photo: np.ndarray) -> None:
    hr = np.ascontiguousarray(photo[:128, :128])
    for name in OPERATORS:
        if name != "realesrgan":
            assert get_degradation(name).target(hr) is hr
    sharp = get_degradation("realesrgan").target(hr)
    assert sharp.dtype == np.uint8 and sharp.shape == hr.shape
    assert _laplacian_energy(sharp) > 1.2 * _laplacian_energy(hr)  # sharper
    assert abs(sharp.astype(float).mean() - hr.astype(float).mean()) < 1.0  # same brightness
    flat = np.full((64, 64, 3), 120, np.uint8)
    np.testing.assert_array_equal(usm_sharpen(flat), flat)  # below the threshold nothing changes


# ------------------------------------------------------------------------------------------------ sampling phase


@pytest.mark.parametrize("name", PHASED)
def test_phase_moves_the_sampling_grid(name: str) -> None:
    """On a vertical ramp, LR at phase (0, 0) matches bicubic's grid and phase dy shifts it by dy HR rows;
    ±s/2 (half an LR pixel) and ±0.5 (half an HR pixel) are both possible."""
    hr = _ramp()
    op = get_degradation(name).degrade
    bic = _interior_mean(_bicubic(hr))
    for dy in (-2.0, -0.5, 0.0, 0.5, 1.7):
        lr = op(hr, np.random.default_rng(0), 4, phase=(dy, 0.0), quality=95, **QUIET[name])
        assert (_interior_mean(lr) - bic) / 0.9 == pytest.approx(dy, abs=0.2), dy


RAW = {"blur": degrade_blur, "noise_jpeg": degrade_noise_jpeg, "camera": degrade_camera}
RAW |= {"downscale_motion": degrade_downscale_motion, "resize_chain": degrade_resize_chain, "phone": degrade_phone}
RAW |= {"webcam": degrade_webcam}
PINNED_DY = {"blur": 0.5, "noise_jpeg": 0.5, "camera": 0.0, "downscale_motion": -1.0}  # the registry's grids
PINNED_DY |= {"resize_chain": -0.5, "phone": 1.0, "webcam": 0.5}


@pytest.mark.parametrize("name", PHASED + ["noise_jpeg"])
def test_phase_is_drawn_per_call_unless_pinned(name: str) -> None:
    """Called directly, an operator draws its grid offset relative to bicubic's per call (spanning more than one HR
    pixel); the registered operator has one grid, as a camera does: the same offset for every image."""
    hr = _ramp()
    bic = _interior_mean(_bicubic(hr))

    def shift(lr: np.ndarray) -> float:
        return (_interior_mean(lr) - bic) / 0.9

    drawn = [shift(RAW[name](hr, np.random.default_rng(s), 4)) for s in range(12)]
    assert max(drawn) - min(drawn) > 1.5
    assert max(drawn) > 0.3 and min(drawn) < -0.3
    quiet = QUIET.get(name, {}) if name == "phone" else {}  # its noise alone moves a ramp's mean by ±0.4 px
    pinned = [shift(get_degradation(name).degrade(hr, np.random.default_rng(s), 4, **quiet)) for s in range(6)]
    assert max(pinned) - min(pinned) < 0.75  # noise and JPEG only (drawn: > 1.5)
    assert np.mean(pinned) == pytest.approx(PINNED_DY[name], abs=0.3)


def test_noise_jpeg_is_degrade_real_at_a_drawn_offset(photo: np.ndarray) -> None:
    hr = np.ascontiguousarray(photo[:128, :96])
    out = get_degradation("noise_jpeg").degrade(hr, np.random.default_rng(3), 4, offset=(1, 3))
    rng = np.random.default_rng(3)
    rng.integers(0, 4, size=2)  # the offset draw
    np.testing.assert_array_equal(out, degrade_real(hr, rng, 4, offset=(1, 3)))
    default = degrade_real(hr, np.random.default_rng(5), 4)  # the demo's behaviour: offset scale // 2
    np.testing.assert_array_equal(default, degrade_real(hr, np.random.default_rng(5), 4, offset=(2, 2)))
    shifted = degrade_real(_ramp(), np.random.default_rng(5), 4, offset=(0, 0))
    centred = degrade_real(_ramp(), np.random.default_rng(5), 4, offset=(3, 0))
    assert (_interior_mean(centred) - _interior_mean(shifted)) / 0.9 == pytest.approx(3, abs=0.3)


# ------------------------------------------------------------------------------------------ what each one does


def test_blur_removes_more_high_frequencies_than_bicubic(photo: np.ndarray) -> None:
    hr = np.ascontiguousarray(photo[:256, :256])
    bicubic = _laplacian_energy(_bicubic(hr))
    op = get_degradation("blur").degrade
    energies = [_laplacian_energy(op(hr, np.random.default_rng(s), 4)) for s in range(6)]
    assert np.mean(energies) < 0.75 * bicubic
    strongest = op(hr, np.random.default_rng(0), 4, sigma=(2.5, 2.5), noise=0.0, phase=(0.0, 0.0))
    assert _laplacian_energy(strongest) < 0.4 * bicubic


def test_camera_noise_grows_with_intensity() -> None:
    """Shot noise: the variance on a bright flat patch exceeds that on a dark one (signal-independent noise,
    as in noise_jpeg, gives a ratio near 1)."""
    hr = np.zeros((256, 256, 3), np.uint8)
    hr[:, :128], hr[:, 128:] = 40, 210
    ratios = {}
    for name in ("camera", "noise_jpeg"):
        op = get_degradation(name).degrade
        r = []
        for s in range(4):
            lr = op(hr, np.random.default_rng(s), 4).astype(np.float64)
            r.append(lr[8:-8, 40:56].var() / lr[8:-8, 8:24].var())  # bright / dark, away from the edge
        ratios[name] = float(np.mean(r))
    assert ratios["camera"] > 2.0, ratios
    assert ratios["noise_jpeg"] < 1.5, ratios


def test_camera_mosaic_adds_colour_and_sharpening_adds_halo() -> None:
    """A grey step edge stays grey and inside its two levels under bicubic; through the camera it gets colour
    fringes (Bayer mosaic + bilinear demosaic) and an overshoot (unsharp mask)."""
    hr = np.full((128, 128, 3), 60, np.uint8)
    hr[:, 62:] = 190  # a vertical edge between LR pixels
    quiet = {"shot": 1e-9, "read": 0.0, "quality": 95, "phase": (0.0, 0.3)}
    lr = get_degradation("camera").degrade(hr, np.random.default_rng(0), 4, amount=1.2, **quiet).astype(float)
    bic = _bicubic(hr).astype(float)
    chroma = np.abs(lr[..., 0] - lr[..., 2]).max()
    assert chroma > 10 and np.abs(bic[..., 0] - bic[..., 2]).max() == 0
    grey = lr.mean(axis=-1)[8:-8]
    assert grey.max() > bic.max() + 8 and grey.min() < bic.min() - 8, (grey.min(), grey.max(), bic.min(), bic.max())


def test_motion_blur_is_directional() -> None:
    """White-noise HR: bicubic LR has equal vertical and horizontal gradient energy; motion along x smooths
    horizontal differences, motion along y vertical ones."""
    hr = np.random.default_rng(0).integers(40, 216, (256, 256, 1), dtype=np.uint8).repeat(3, axis=2)

    def ratio(img: np.ndarray) -> float:  # horizontal / vertical gradient energy
        g = img.astype(np.float64).mean(axis=-1)
        return float((np.diff(g, axis=1) ** 2).mean() / (np.diff(g, axis=0) ** 2).mean())

    op = get_degradation("downscale_motion").degrade
    fixed = {"length": 8.0, "downscaler": "area", "phase": (0.0, 0.0), "noise": 0.0, "quality": 95}
    along_x = op(hr, np.random.default_rng(0), 4, angle=0.0, **fixed)
    along_y = op(hr, np.random.default_rng(0), 4, angle=np.pi / 2, **fixed)
    assert 0.85 < ratio(_bicubic(hr)) < 1.15
    assert ratio(along_x) < 0.6 and ratio(along_y) > 1 / 0.6


def test_bilinear_downscaler_aliases_more_than_area() -> None:
    hr = np.random.default_rng(1).integers(40, 216, (256, 256, 3), dtype=np.uint8)
    op = get_degradation("downscale_motion").degrade
    fixed = {"length": 2.0, "angle": 0.3, "phase": (0.0, 0.0), "noise": 0.0, "quality": 95}
    area = op(hr, np.random.default_rng(0), 4, downscaler="area", **fixed)
    bilinear = op(hr, np.random.default_rng(0), 4, downscaler="bilinear", **fixed)
    assert _laplacian_energy(bilinear) > 1.5 * _laplacian_energy(area)


def test_resize_chain_aliases_where_bicubic_does_not() -> None:
    """On white noise the chain's last resize, without antialiasing, keeps more fine-band energy than bicubic's
    antialiased ×1/4 (its first JPEG at q95 changes little)."""
    fixed = {"phase": (0.0, 0.3), "quality1": 95, "noise": 0.0, "quality": 95}
    noise = np.random.default_rng(1).integers(40, 216, (256, 256, 3), dtype=np.uint8)
    chain = get_degradation("resize_chain").degrade(noise, np.random.default_rng(0), 4, **fixed)
    assert _laplacian_energy(chain) > 1.5 * _laplacian_energy(_bicubic(noise))


def test_resize_chain_wants_an_even_scale(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="scale must be even"):
        get_degradation("resize_chain").degrade(np.ascontiguousarray(photo[:96, :96]), np.random.default_rng(0), 3)


def test_phone_denoiser_flattens_noise_and_bleeds_colour() -> None:
    """On a flat grey patch the phone's denoiser leaves less noise than its sensor made (the camera operator,
    which has no denoiser, at the same noise keeps it); a sharp red/green edge comes out with its colour spread
    over more LR pixels than its grey level (chroma smoothed more than luma), and more saturated."""
    flat = np.full((256, 256, 3), 128, np.uint8)
    noisy = {"shot": 1e-3, "read": 2 / 255, "quality": 95, "phase": (0.0, 0.0)}
    phone = get_degradation("phone").degrade(flat, np.random.default_rng(0), 4, **noisy).astype(float)
    camera = get_degradation("camera").degrade(flat, np.random.default_rng(0), 4, **noisy, amount=0.0)
    assert phone[8:-8, 8:-8].std() < 0.6 * camera.astype(float)[8:-8, 8:-8].std()
    edge = np.zeros((128, 128, 3), np.uint8)
    edge[:, :64] = (200, 40, 40)
    edge[:, 64:] = (40, 160, 40)
    quiet = {"shot": 1e-9, "read": 0.0, "quality": 95, "phase": (0.0, 0.0), "chroma_blur": 2.0, "amount": 0.0}
    lr = get_degradation("phone").degrade(edge, np.random.default_rng(0), 4, saturation=1.2, **quiet).astype(float)
    row = lr[16]
    redness = row[:, 0] - row[:, 1]
    assert (
        np.abs(np.diff(redness)).max()
        < 0.75 * np.abs(np.diff(_bicubic(edge).astype(float)[16][:, 0] - _bicubic(edge).astype(float)[16][:, 1])).max()
    )
    assert redness[2] > (200 - 40) + 5  # saturation boost: redder than the source far from the edge


def test_webcam_splits_red_from_blue() -> None:
    """Lateral chromatic aberration: on a grey vertical step the red and blue edges land 2 × `aberration` HR px
    apart along x (a channel's row sum moves by the edge's height per LR px of shift), and together without it."""
    hr = np.full((128, 128, 3), 60, np.uint8)
    hr[:, 64:] = 190
    quiet = {"noise": 0.0, "quality": 95, "deblock": 0.0, "phase": (0.0, 0.0), "radius": 1.0, "angle": 0.0}

    def red_minus_blue(aberration: float) -> float:  # LR px
        lr = get_degradation("webcam").degrade(hr, np.random.default_rng(0), 4, aberration=aberration, **quiet)
        rows = lr[8:-8].astype(np.float64).sum(axis=1).mean(axis=0)  # per channel
        return float((rows[0] - rows[2]) / (190 - 60))  # red samples +aberration along x: its edge comes earlier

    assert red_minus_blue(1.2) == pytest.approx(2 * 1.2 / 4, abs=0.12)
    assert red_minus_blue(0.0) == pytest.approx(0.0, abs=0.05)


def test_webcam_deblocking_smooths_block_edges_not_real_ones() -> None:
    """After heavy compression a smooth gradient steps at the 8-px block boundaries; the deblocking filter makes
    those steps smaller than the steps inside blocks were made larger, and leaves a strong edge that sits on a
    boundary as it is."""
    yy, xx = np.mgrid[0:256, 0:256]
    hr = np.repeat((60 + 0.35 * xx + 0.2 * yy)[..., None], 3, axis=2).astype(np.uint8)
    fixed = {"noise": 0.0, "aberration": 0.0, "quality": 30, "phase": (0.0, 0.0), "radius": 1.0}

    def boundary_step(lr: np.ndarray) -> float:
        steps = np.abs(np.diff(lr.astype(np.float64).mean(axis=-1), axis=1))[4:-4]
        return float(steps[:, 7::8].mean() / steps.mean())  # columns 7 -> 8, 15 -> 16, ...

    op = get_degradation("webcam").degrade
    plain = op(hr, np.random.default_rng(0), 4, deblock=0.0, **fixed)
    filtered = op(hr, np.random.default_rng(0), 4, deblock=24 / 255, **fixed)
    assert boundary_step(plain) > 1.5 and boundary_step(filtered) < 0.7 * boundary_step(plain)
    edge = np.zeros((32, 32, 3), np.float32)
    edge[:, 8:] = 0.8  # a step of 0.8 on the boundary between columns 7 and 8
    np.testing.assert_array_equal(deblock(edge, 24 / 255), edge)


def test_realesrgan_is_strong_and_diverse(photo: np.ndarray) -> None:
    """The blind recipe's draws range from heavy blur to heavy noise: far from bicubic, and widely spread."""
    hr = np.ascontiguousarray(photo[:256, :256])
    bic = _bicubic(hr).astype(np.float64)
    op = get_degradation("realesrgan").degrade
    outs = [op(hr, np.random.default_rng(s), 4).astype(np.float64) for s in range(10)]
    psnrs = [10 * np.log10(255**2 / ((o - bic) ** 2).mean()) for o in outs]
    assert np.median(psnrs) < 27
    energies = np.array([_laplacian_energy(o) for o in outs])
    assert energies.max() > 4 * energies.min()


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
def test_realesrgan_resize_matches_the_tensor_convention(mode: str) -> None:
    """The recipe's resizes are the tensor library's non-antialiased ones; ours are numpy re-implementations."""
    x = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    for size in [(9, 13), (80, 70), (5, 100)]:
        ref = F.interpolate(t, size=size, mode=mode)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(D._resize(x, *size, mode), ref, atol=2e-5)
    ref = F.interpolate(t, scale_factor=0.37, mode=mode)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(D._resize(x, *ref.shape[:2], mode, step=1 / 0.37), ref, atol=2e-5)


def test_realesrgan_kernels() -> None:
    sinc = D._sinc_kernel(np.pi / 3, 21)
    assert sinc.sum() == pytest.approx(1) and np.allclose(sinc, sinc.T) and np.allclose(sinc, sinc[::-1])
    assert sinc.min() < 0  # ringing lobes, what the sinc is there to imitate
    gauss = D._shaped_kernel("aniso", 21, 3.0, 1.0, 0.0, 1.0)
    np.testing.assert_allclose(D._shaped_kernel("generalized_aniso", 21, 3.0, 1.0, 0.0, 1.0), gauss)
    assert gauss[10].sum() > gauss[:, 10].sum()  # σx = 3 along x, σy = 1: spread along the row
    plateau = D._shaped_kernel("plateau_iso", 21, 2.0, 2.0, 0.0, 2.0)
    assert plateau.sum() == pytest.approx(1) and plateau[10, 10] == plateau.max()
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = D._random_kernel(rng, (0.2, 3.0), 0.1)
        assert k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21 and k.sum() == pytest.approx(1)


# ------------------------------------------------------------------------------------------ translation metrics


def _t(img: np.ndarray) -> torch.Tensor:
    return uint8_to_model(img).unsqueeze(0)


def test_translation_metrics_identity_and_errors(photo: np.ndarray) -> None:
    x = _t(np.ascontiguousarray(photo[:64, :96]))
    m = translation_metrics(x, x)
    assert m["psnr"] == float("inf") and m["spectral_distance"] == 0 and m["spectral_distance_high"] == 0
    assert m["noise_std_ratio"] == 1
    with pytest.raises(ValueError, match="shapes differ"):
        translation_metrics(x, x[..., :32])


def test_translation_metrics_see_the_kind_of_degradation(photo: np.ndarray) -> None:
    """Blur is far from sharp in spectrum and fine-band level; a tiny noise is close; strong noise is noisier."""
    sharp = np.ascontiguousarray(photo[:128, :128])
    rng = np.random.default_rng(0)
    tiny = np.clip(sharp + rng.normal(0, 0.5, sharp.shape), 0, 255).round().astype(np.uint8)
    noisy = np.clip(sharp + rng.normal(0, 12, sharp.shape), 0, 255).round().astype(np.uint8)
    blurred = model_to_uint8(bicubic_resize(bicubic_resize(uint8_to_model(sharp), 0.5), 2.0).clamp(-1, 1))
    m_tiny = translation_metrics(_t(tiny), _t(sharp))
    m_blur = translation_metrics(_t(blurred), _t(sharp))
    m_noisy = translation_metrics(_t(noisy), _t(sharp))
    assert m_blur["spectral_distance"] > 5 * m_tiny["spectral_distance"]
    assert m_blur["spectral_distance_high"] > 20 * m_tiny["spectral_distance_high"]
    assert m_blur["noise_std_ratio"] < 0.8 < 0.9 < m_tiny["noise_std_ratio"] < 1.1 < 1.5 < m_noisy["noise_std_ratio"]
    assert m_tiny["psnr"] > 40 > m_noisy["psnr"]
    # the statistics do not need the same pixels: two halves of one noisy photo match in the fine band
    halves = translation_metrics(_t(noisy[:, :64]), _t(np.ascontiguousarray(noisy[:, 64:])))
    assert halves["psnr"] < 15 and halves["spectral_distance_high"] < m_blur["spectral_distance_high"] / 4
    assert 0.9 < halves["noise_std_ratio"] < 1.1
