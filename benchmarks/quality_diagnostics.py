"""Diagnostics behind BENCHMARKS.md "Quality — what made it work", on the data `benchmarks/quality.py` builds
(`--data WORK/data`) for one operator (`--operator`, default noise_jpeg: the degradation those notes studied).

sr-on VARIANT   train the benchmark's SR net (vdsr_lr nf32 nb6 bicubic_skip, Adam 1e-4, betas (0.5, 0.999),
                1000·MSE, grad clip 50, batch 8, HR patch 96, LR constant then linear to 0 over the second half)
                on synthetic LR made from the HR scenes, then evaluate on the operator's test scenes. VARIANT:
                bicubic | noise (bicubic + N(0, σ), σ ~ U(2, 6)/255) | noise-jpeg (+ JPEG q70–90) | true (each
                HR crop degraded by the operator itself, as the oracle trains). Which part of the degradation
                does the oracle's gain come from?
energy RUN      median |x − box3×3(x)| (0–255) of clean LR, G(clean LR) and the operator-degraded LR of the same
                HR scenes, 16 random 64² crops each: does the translation add as much fine-band energy as the
                real degradation? RUN: a CycleSR training output dir (e.g. WORK/noise_jpeg/cyclesr).
disc RUN        the run's D_Y (`disc_real`) mean score (LSGAN: 1 = real, 0 = fake) on 16 random 24² crops (the
                training crop size) of each LR of: the real-LR domain; the HR-domain scenes' clean LR, G of it, and
                the same scenes degraded by the operator: does D_Y judge the degradation or the scenes? If it
                scores the degraded HR-domain scenes like the real LR and G's output like the clean LR, it has
                learned the degradation and the generator is what does not follow. Where the operator takes a
                JPEG `quality`, also the degraded scenes at quality 100: how much of the score is JPEG's 8×8 grid
                (which a convolutional G, with no sense of position, cannot draw). Where G has them, also G with
                its noise off and with its JPEG stage off: which of its parts does D_Y mark?
edges           median edge width (px) of the LR's strongest edges — contrast across ±3 px over the gradient at
                the top 2 % of gradient maxima, luma — on: the test scenes' clean LR (bicubic of their HR) and their
                true LR (the operator's), then the HR-domain scenes' clean LR and the real-LR domain. Can the blur be
                *measured* without pairs, as the JPEG quality is? Only if the unpaired sets' difference tracks the
                operator's, not the scenes'. Also the σ of the Gaussian that gives the clean LR the degraded width,
                solved on the unpaired sets (what `input_blur: auto` measures) and on the same scenes.

  python benchmarks/quality_diagnostics.py --data runs/quality/data sr-on noise-jpeg --steps 1000
  python benchmarks/quality_diagnostics.py --data runs/quality/data --operator camera energy runs/quality/camera/cyclesr
  python benchmarks/quality_diagnostics.py --data runs/quality/data --operator blur disc runs/quality/blur/cyclesr
  python benchmarks/quality_diagnostics.py --data runs/quality/data --operator blur edges
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from quality_suite.data import SCALE, load_test_pairs  # noqa: E402
from quality_suite.runs import load_generator, load_network  # noqa: E402

from cyclesr_dist.cyclesr.blur_estimate import clean_lr, estimate_input_blur  # noqa: E402
from cyclesr_dist.data.degrade import get_degradation  # noqa: E402
from cyclesr_dist.data.images import (  # noqa: E402
    clean_downscale,
    load_rgb,
    model_to_uint8,
    to_value_range,
    uint8_to_model,
)
from cyclesr_dist.models import SR_NETS  # noqa: E402
from cyclesr_dist.serve.evaluate import evaluate_pairs  # noqa: E402
from cyclesr_dist.serve.export import recorded_range  # noqa: E402

VARIANTS = ["bicubic", "noise", "noise-jpeg", "true"]


def _jpeg(img: np.ndarray, quality_: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality_)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).copy()


def _patch(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size² crop, then one of the 8 flips/rotations (the trainer's default HR augmentation)."""
    top, left = int(rng.integers(0, img.shape[0] - size + 1)), int(rng.integers(0, img.shape[1] - size + 1))
    crop, k = img[top : top + size, left : left + size], int(rng.integers(0, 8))
    return np.ascontiguousarray(np.rot90(crop[:, ::-1] if k & 4 else crop, k & 3))


def _test_scenes(data: Path) -> list[str]:
    return json.loads((data / "manifest.json").read_text())["spec"]["splits"]["test"]


def sr_on(data: Path, operator: str, variant: str, steps: int, batch: int = 8, patch: int = 96) -> dict:
    torch.manual_seed(0)
    hr_images = [load_rgb(p) for p in sorted((data / "hr").glob("*.png"))]
    degradation = get_degradation(operator)

    def sample(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([0, i])
        crop = _patch(hr_images[int(rng.integers(len(hr_images)))], patch, rng)
        if variant == "true":
            lr_true = degradation.degrade(crop, rng, SCALE)
            return uint8_to_model(lr_true), uint8_to_model(degradation.target(crop))
        hr = uint8_to_model(crop)
        lr = clean_downscale(hr, SCALE)
        if variant == "bicubic":
            return lr, hr
        lr_u8 = lr.add(1).mul(127.5).permute(1, 2, 0).numpy().astype(np.float64)
        lr_u8 = np.clip(lr_u8 + rng.normal(0, rng.uniform(2, 6), lr_u8.shape) + 0.5, 0, 255).astype(np.uint8)
        if variant == "noise-jpeg":
            lr_u8 = _jpeg(lr_u8, int(rng.integers(70, 91)))
        return uint8_to_model(np.ascontiguousarray(lr_u8)), hr

    net = SR_NETS.build("vdsr_lr", {"nf": 32, "nb": 6, "bicubic_skip": True})
    opt = torch.optim.Adam(net.parameters(), 1e-4, betas=(0.5, 0.999))
    for step in range(steps):
        pairs = [sample(step * batch + k) for k in range(batch)]
        lr, hr = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        loss = 1000 * F.mse_loss(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 50)
        opt.step()
        for group in opt.param_groups:
            group["lr"] = 1e-4 * min(1.0, 2 * (1 - step / steps))
    net.eval()
    return evaluate_pairs(net, load_test_pairs(data, operator, _test_scenes(data)), scale=SCALE)


def _fine_band(t: torch.Tensor) -> float:
    residual = t - F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), 3, 1)
    return float(residual.abs().median()) * 255 / 2


def _crops(img: np.ndarray, n: int = 16, size: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        top, left = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append(uint8_to_model(np.ascontiguousarray(img[top : top + size, left : left + size])))
    return torch.stack(out)


@torch.no_grad()
def energy(data: Path, operator: str, run: Path) -> dict[str, float]:
    torch.manual_seed(0)
    gen = load_generator(run)
    degrade = get_degradation(operator).degrade
    clean, fake, degraded = [], [], []
    for i, path in enumerate(sorted((data / "hr").glob("*.png"))):
        hr = load_rgb(path)
        lr = clean_downscale(uint8_to_model(hr), SCALE)
        crops = _crops(lr.add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy())
        clean.append(_fine_band(crops))
        fake.append(_fine_band(gen(crops)))
        degraded.append(_fine_band(_crops(degrade(hr, np.random.default_rng([4, i]), SCALE))))
    return {"clean": float(np.mean(clean)), "G(clean)": float(np.mean(fake)), "degraded": float(np.mean(degraded))}


@torch.no_grad()
def disc_scores(data: Path, operator: str, run: Path) -> dict[str, float]:
    torch.manual_seed(0)
    disc, entry = load_network(run, "disc_real")  # a score, not an image: only its input is mapped to its range
    gen = load_generator(run)
    value_range = recorded_range(entry)

    def score(lr: torch.Tensor) -> float:
        crops = _crops(model_to_uint8(lr), n=16, size=24)
        return float(disc(to_value_range(crops, value_range)).mean())

    scores: dict[str, list[float]] = {"real LR": [], "clean LR": [], "G(clean LR)": [], "degraded": []}
    parts_off = {}  # G with one of its parts switched off: which of them does D_Y mark?
    if getattr(gen, "tail_noise", 0) or getattr(gen, "input_noise", 0):
        parts_off["G without its noise"] = ("noise_std", 0.0)
    if getattr(gen, "jpeg", None) is not None:
        parts_off["G without its JPEG"] = ("jpeg", None)
    for path in sorted((data / operator / "real_lr").glob("*.png")):
        scores["real LR"].append(score(uint8_to_model(load_rgb(path))))
    degrade = get_degradation(operator).degrade
    for i, path in enumerate(sorted((data / "hr").glob("*.png"))):
        hr = load_rgb(path)
        clean = clean_downscale(uint8_to_model(hr).unsqueeze(0), SCALE)
        scores["clean LR"].append(score(clean[0]))
        scores["G(clean LR)"].append(score(gen(clean)[0]))
        for part, (attribute, off) in parts_off.items():
            kept = getattr(gen, attribute)
            setattr(gen, attribute, off)
            scores.setdefault(part, []).append(score(gen(clean)[0]))
            setattr(gen, attribute, kept)
        scores["degraded"].append(score(uint8_to_model(degrade(hr, np.random.default_rng([4, i]), SCALE))))
        try:
            no_jpeg = degrade(hr, np.random.default_rng([4, i]), SCALE, quality=100)
        except TypeError:  # this operator has no JPEG quality to pin
            continue
        scores.setdefault("degraded, JPEG q100", []).append(score(uint8_to_model(no_jpeg)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def edge_widths(data: Path, operator: str) -> dict[str, float]:
    """Median widths of the four sets' strongest edges and the input blur G would be given: solved on the unpaired
    sets (what `input_blur: auto` measures) and on the test scenes' clean and true LR (the same scenes)."""
    folder = data / operator
    test_clean = [clean_lr(load_rgb(p), SCALE) for p in sorted((folder / "test" / "hr").glob("*.png"))]
    test_lr = [load_rgb(p) for p in sorted((folder / "test" / "lr").glob("*.png"))]
    clean = [clean_lr(load_rgb(p), SCALE) for p in sorted((data / "hr").glob("*.png"))]
    real_lr = [load_rgb(p) for p in sorted((folder / "real_lr").glob("*.png"))]
    same, unpaired = estimate_input_blur(test_clean, test_lr), estimate_input_blur(clean, real_lr)
    return {
        "test scenes, clean LR": same["clean_width"],
        "test scenes, true LR": same["real_width"],
        "HR-domain scenes, clean LR": unpaired["clean_width"],
        "real-LR domain": unpaired["real_width"],
        "sigma unpaired": unpaired["sigma"],
        "sigma same scenes": same["sigma"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="the data folder benchmarks/quality.py built (WORK/data)")
    p.add_argument("--operator", default="noise_jpeg", help="whose test set / true degradation to use")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sr-on")
    s.add_argument("variant", choices=VARIANTS)
    s.add_argument("--steps", type=int, default=1000)
    e = sub.add_parser("energy")
    e.add_argument("run")
    d = sub.add_parser("disc")
    d.add_argument("run")
    sub.add_parser("edges")
    args = p.parse_args(argv)
    data = Path(args.data)
    if args.cmd == "sr-on":
        res = sr_on(data, args.operator, args.variant, args.steps)
        scenes = " ".join(f"{im['name']} {im['psnr_rgb']:.2f}" for im in res["images"])
        m = res["mean"]
        print(f"{args.variant}, {args.steps} updates: {scenes}; mean {m['psnr_rgb']:.2f} / {m['ssim_rgb']:.4f}")
    elif args.cmd == "energy":
        e = energy(data, args.operator, Path(args.run))
        print(f"{args.run}: fine-band energy (0-255) " + ", ".join(f"{k} {v:.2f}" for k, v in e.items()))
    elif args.cmd == "edges":
        w = edge_widths(data, args.operator)
        widths = list(w)[:4]
        print(
            f"{args.operator}: median edge width (px) "
            + ", ".join(f"{k} {w[k]:.3f}" for k in widths)
            + f"; true ÷ clean, same scenes {w[widths[1]] / w[widths[0]]:.3f}; real ÷ clean, unpaired "
            f"{w[widths[3]] / w[widths[2]]:.3f}; the two clean sets {w[widths[2]] / w[widths[0]]:.3f}; "
            f"σ of the Gaussian giving the clean LR the degraded width, LR px: unpaired (input_blur: auto) "
            f"{w['sigma unpaired']:.2f}, same scenes {w['sigma same scenes']:.2f}"
        )
    else:
        scores = disc_scores(data, args.operator, Path(args.run))
        print(f"{args.run}: mean D_Y score (1 = real) " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
