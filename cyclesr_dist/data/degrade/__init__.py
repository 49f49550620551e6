"""Synthetic degradations: a clean HR photo -> the LR a camera or an image pipeline would have made of it.

Every operator is `fn(hr, rng, scale=4, **fixed) -> lr`: `hr` is HxWx3 uint8 with H, W multiples of `scale`,
`lr` is (H/scale)x(W/scale)x3 uint8. Each random parameter is drawn from `rng` per call, always all of them and in
a fixed order, so the same generator state gives the same output. `fixed` pins a drawn parameter by name (the
draw still happens, so the other parameters stay what they would have been); the names are listed below and an
unknown one raises TypeError. All of it is numpy/scipy/PIL, cheap enough to run per training crop in a
DataLoader worker: per 96² crop 1–10 ms (realesrgan 15 ms), per 480² crop 20–80 ms (realesrgan ~190 ms, most of
it the two 51-tap Gaussian blurs of its unsharp mask; its `target` costs as much again); one CPU core.

`DEGRADATIONS` maps a name to a `Degradation` (the operator plus whether the training target is sharpened);
`get_degradation(name)` looks one up. U(a, b) is uniform, logU log-uniform, U{a..b} uniform over integers.

Sampling phase (`phase`, HR pixels, per axis (y, x)). The antialiased bicubic ×1/s puts LR pixel i at HR coordinate
s·i + (s−1)/2 (pixel centres at integers). A real sensor or resizer need not: every operator that decimates samples
LR pixel i at s·i + (s−1)/2 + phase instead. A camera or a resizer has *one* sampling grid, so the registered
operators pin it (`DEGRADATIONS`: blur (0.5, 0.5), noise_jpeg offset s//2 = phase (0.5, 0.5) at ×4, camera (0, 0),
downscale_motion (−1, 1), resize_chain (−0.5, −0.5), phone (1, −0.5), webcam (0.5, −1.5) HR px); called directly
without `phase`, an operator draws it per call from U(−s/2, s/2) per axis, anywhere up to half an LR pixel either
side of bicubic's grid. A grid offset that is the same for every image cannot be told from the LR images alone
(natural images look the same shifted), so only a model trained on true pairs can learn it; the quality benchmark
therefore also reports the best PSNR over small integer shifts. A fractional phase is realised inside the sampling
kernel (a Gaussian evaluated off-centre, a box or bilinear tap shifted by the fraction), the integer part by where
decimation starts; pixels the shifted grid needs beyond the border are reflected, and the output is always exactly
(H/s)x(W/s). `noise_jpeg` keeps `degrade_real`'s point decimation and draws an integer start offset in {0..s−1} per
axis instead (phase offset − (s−1)/2 ∈ {−1.5, −0.5, 0.5, 1.5} HR px at s = 4).

blur (`degrade_blur`): blur-dominated.
    kernel      isotropic Gaussian with p = 0.5, σ ~ U(1, 2.5) HR px (`sigma`: (σ1, σ2)); else anisotropic,
                σ1, σ2 ~ U(1, 2.5) independently, angle ~ U(0, π) (`angle`, radians); support ±⌈3.5σ⌉
    sampling    point decimation of the blurred image at the phase above (`phase`)
    noise       Gaussian, σ ~ U(0.5, 2) / 255, per pixel and channel (`noise`)
    JPEG        quality ~ U{85..95} (`quality`)

noise_jpeg (`degrade_noise_jpeg`): `degrade_real` below, with a start offset ~ U{0..s−1} per axis (`offset`).
    anisotropic Gaussian σ_major ~ U(1.6, 2.4), σ_minor ~ U(0.6, 1.0) HR px, angle ~ U(0, π), 21×21; point
    decimation; Gaussian noise σ ~ U(2, 6) / 255; JPEG quality ~ U{70..90}. `degrade_real` itself (offset s//2)
    is what the demo data and the original quality benchmark use.

camera (`degrade_camera`): a small camera pipeline, the 8-bit values standing in for the sensor signal.
    optics      isotropic Gaussian σ ~ U(0.8, 1.6) HR px (`sigma`), a weak optical low-pass
    sensor      pixel aperture: s×s box averaging at the phase above (`phase`) = ×1/s downsampling
    mosaic      RGGB Bayer: R at (even, even), G at (even, odd) and (odd, even), B at (odd, odd) LR pixels
    noise       Poisson-Gaussian on the mosaic (signal x in [0, 1]): Poisson(x / a)·a + N(0, σ_read²), shot gain
                a ~ logU(1e-4, 1e-3) (`shot`; σ at white 2.6–8 / 255), σ_read ~ U(0.5, 2) / 255 (`read`): the
                variance a·x + σ_read² grows with intensity, unlike the other operators' noise
    demosaic    bilinear interpolation of each colour plane from its mosaic sites
    sharpening  unsharp mask x + amount·(x − G_ρ(x)), amount ~ U(0.5, 1.2) (`amount`), ρ ~ U(0.8, 1.6) LR px
                (`radius`): the halo in-camera sharpening leaves at edges
    JPEG        quality ~ U{70..92} (`quality`)

downscale_motion (`degrade_downscale_motion`): another resizer plus camera shake.
    motion      linear motion blur on the HR image: a segment of length ~ U(2, 8) HR px (`length`) at angle
                ~ U(0, π) (`angle`, radians, 0 = along x), anti-aliased onto the pixel grid
    resizer     area averaging (s×s box) with p = 0.5, else bilinear without antialiasing (two taps per axis,
                aliasing): `downscaler` "area" | "bilinear"; both at the phase above (`phase`)
    noise       Gaussian, σ ~ U(0.5, 2) / 255 (`noise`)
    JPEG        quality ~ U{80..95} (`quality`)

resize_chain (`degrade_resize_chain`, `pipelines.py`): two resizers with a JPEG between them, as an image that
went through a web service and an editor; s even.
    first       antialiased Lanczos-3 ×2/s (the kernel stretched by s/2, its negative lobes kept) at the phase
                above (`phase`), rounded to 8 bits and JPEG-compressed at quality ~ U{60..85} (`quality1`)
    second      Keys cubic (a = −0.5) ×1/2 without antialiasing: four taps half-way between two pixels, two
                of them negative (aliasing and slight sharpening)
    noise       Gaussian, σ ~ U(0.5, 1.5) / 255 (`noise`)
    JPEG        quality ~ U{80..95} (`quality`); the first JPEG's 8×8 grid lands on a 4×4 LR grid, blurred

phone (`degrade_phone`, `pipelines.py`): a phone's pipeline, whose denoiser smooths before the compression.
    optics      isotropic Gaussian σ ~ U(0.6, 1.2) HR px (`sigma`), then the s×s pixel aperture at the phase
                above (`phase`)
    noise       Poisson-Gaussian per RGB channel (so partly chroma noise): shot gain a ~ logU(3e-4, 2e-3)
                (`shot`; σ at white 4.4–11 / 255), σ_read ~ U(1, 3) / 255 (`read`)
    denoiser    in JFIF YCbCr: luma by a 5×5 bilateral filter (σ 1.2 px, range σ = strength × the noise σ
                expected at mid-grey, strength ~ U(1.5, 3), `strength`), chroma by a Gaussian σ ~ U(1, 2) LR px
                (`chroma_blur`): flattened fine texture, colour bleeding across edges
    colour      chroma × saturation ~ U(1, 1.2) (`saturation`)
    sharpening  unsharp mask on luma, amount ~ U(0.3, 0.8) (`amount`), radius 1 LR px
    JPEG        quality ~ U{60..85} (`quality`)

webcam (`degrade_webcam`, `pipelines.py`): a cheap webcam's video frame, added as a held-out family like the two above.
    optics      defocus: a uniform disk of radius ~ U(1, 2.5) HR px (`radius`; flat with a hard rim, so its
                spectrum has zeros where a Gaussian's has none); the red image displaced by ~ U(0.3, 1.2) HR px
                (`aberration`) along an angle ~ U(0, 2π) (`angle`, radians) and the blue by as much the other way
                (lateral chromatic aberration, about constant over a crop); then the s×s pixel aperture at the
                phase above (`phase`)
    noise       Gaussian, σ ~ U(1, 3) / 255, per pixel and channel (`noise`)
    codec       JPEG 4:2:0 at quality ~ U{30..55} (`quality`), heavier than any other family's
    deblocking  a decoder's filter across the 8-px block boundaries: where the step is under α ~ U(8, 24) / 255
                (`deblock`) and both sides are smooth, the pixels either side move towards each other

fitted:PATH (`fitted.py`): the degradation `cyclesr data fit-degradation` fitted to a user's real LR photos, kept
in PATH: a learned HR kernel and decimation on bicubic's grid, a noise patch cut from the real LR's flattest regions,
a JPEG at a quality drawn from the measured range (the RealSR-style recipe's pairs).

realesrgan (`degrade_realesrgan`): the blind second-order degradation of Real-ESRGAN (RealESRNet x4plus
training options), re-implemented here; `sharpen_target=True`: the training target is the unsharp-masked HR
(`usm_sharpen`: Gaussian 51×51, σ 8, weight 0.5, threshold 10/255, soft mask), and the degradation starts from
that sharpened HR, as in that recipe. Its resizes keep their own pixel grid (no extra phase). Per call:
    kernels     size ~ U{7, 9, .., 21}. With p = 0.1 a circular sinc, cutoff ω ~ U(π/3, π) (size < 13) or
                U(π/5, π); else one of iso / aniso / generalized iso / generalized aniso / plateau iso /
                plateau aniso with p = 0.45 / 0.25 / 0.12 / 0.03 / 0.12 / 0.03, σ_x (and σ_y) ~ U(0.2, 3)
                (second kernel: U(0.2, 1.5)), angle ~ U(−π, π), generalized β ~ U(0.5, 1) or U(1, 4) (1/2 each),
                plateau β = 1 or ~ U(1, 2) (1/2 each). Final sinc (p = 0.8): size ~ U{7..21}, ω ~ U(π/3, π).
    first       blur(kernel 1); resize up ×U(1, 1.5) / down ×U(0.15, 1) / keep with p = 0.2 / 0.7 / 0.1, mode
                area / bilinear / bicubic (1/3 each); Gaussian noise σ ~ U(1, 30) / 255 (p = 0.5) else Poisson
                noise (counts = value·2^⌈log2 #8-bit levels in the image⌉) times a scale ~ U(0.05, 3), either
                grey (one plane for all channels) with p = 0.4, clipped to [0, 1]; JPEG q ~ U(30, 95) (rounded)
    second      blur(kernel 2) with p = 0.8; resize to (H/s, W/s)·r, up r ~ U(1, 1.2) / down U(0.3, 1) / keep
                with p = 0.3 / 0.4 / 0.3, random mode; noise as above with σ ~ U(1, 25) / 255, Poisson scale
                ~ U(0.05, 2.5), grey p = 0.4
    final       with p = 0.5 [resize to (H/s, W/s) (random mode), final sinc] then JPEG q ~ U(30, 95),
                else JPEG then [resize, sinc]; clip and round to 8 bits
    Resizes follow the usual tensor-library convention without antialiasing (half-pixel centres; bilinear
    source index clamped at 0; bicubic a = −0.75 with edge-clamped taps; area = adaptive average pooling);
    blurs reflect at the border; JPEG is 4:2:0 (PIL). Every parameter is drawn per crop: the original shares
    the resize, noise-type, second-blur and final-order draws across a GPU batch and mixes batches through a
    180-pair pool to get the diversity back, which per-crop draws do not need.

degrade_real (no registry name of its own; `noise_jpeg` uses it): the documented synthetic "real" degradation of
the demo data and the original quality benchmark, unchanged:

    real_lr = JPEG_q( decimate_×s( anisotropic_gaussian_blur(hr) ) + gaussian_noise )

blur σ_major ~ U(1.6, 2.4) and σ_minor ~ U(0.6, 1.0) HR pixels at a random angle (21×21 kernel), decimation keeps
every s-th pixel starting at s//2 (no anti-aliasing beyond the blur), noise σ ~ U(2, 6) / 255, JPEG quality
~ U(70, 90).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from .common import anisotropic_gaussian_kernel
from .fitted import FittedDegradation
from .operators import degrade_blur, degrade_camera, degrade_downscale_motion, degrade_noise_jpeg, degrade_real
from .pipelines import degrade_phone, degrade_resize_chain, degrade_webcam
from .realesrgan import REALESRGAN_OPTIONS, degrade_realesrgan, usm_sharpen


@dataclass(frozen=True)
class Degradation:
    """A named HR -> LR operator. `degrade(hr, rng, scale)`: HR uint8 HxWx3 (H, W multiples of scale) -> LR uint8
    (H/scale)x(W/scale)x3. `sharpen_target`: a model trained on its pairs learns the unsharp-masked HR
    (`target`), as the blind recipe does."""

    name: str
    degrade: Callable[[np.ndarray, np.random.Generator, int], np.ndarray]
    sharpen_target: bool = False

    def target(self, hr: np.ndarray) -> np.ndarray:
        """The training target for HR crop `hr`: `usm_sharpen(hr)` when sharpen_target, else `hr` itself."""
        return usm_sharpen(hr) if self.sharpen_target else hr


DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("blur", partial(degrade_blur, phase=(0.5, 0.5))),
        Degradation("noise_jpeg", partial(degrade_noise_jpeg, offset=None)),  # degrade_real's s//2
        Degradation("camera", partial(degrade_camera, phase=(0.0, 0.0))),
        Degradation("downscale_motion", partial(degrade_downscale_motion, phase=(-1.0, 1.0))),
        Degradation("realesrgan", degrade_realesrgan, sharpen_target=True),
        # after realesrgan, so that the quality benchmark's seeds (by position) of the others stay what they were
        Degradation("resize_chain", partial(degrade_resize_chain, phase=(-0.5, -0.5))),
        Degradation("phone", partial(degrade_phone, phase=(1.0, -0.5))),
        Degradation("webcam", partial(degrade_webcam, phase=(0.5, -1.5))),
    )
}


FITTED = "fitted:"  # `fitted:PATH`: the operator of a fitted degradation file (`fitted.py`)


def get_degradation(name: str) -> Degradation:
    """The registered degradation `name`, or `fitted:PATH`'s; ValueError naming the valid names otherwise."""
    if name.startswith(FITTED):
        return Degradation(name, FittedDegradation(name[len(FITTED) :]))
    try:
        return DEGRADATIONS[name]
    except KeyError:
        raise ValueError(f"unknown degradation {name!r}; valid: {', '.join(DEGRADATIONS)}, {FITTED}PATH") from None


__all__ = [
    "DEGRADATIONS",
    "FITTED",
    "REALESRGAN_OPTIONS",
    "Degradation",
    "FittedDegradation",
    "anisotropic_gaussian_kernel",
    "degrade_blur",
    "degrade_camera",
    "degrade_downscale_motion",
    "degrade_noise_jpeg",
    "degrade_phone",
    "degrade_real",
    "degrade_realesrgan",
    "degrade_resize_chain",
    "degrade_webcam",
    "get_degradation",
    "usm_sharpen",
]
