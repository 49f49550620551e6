"""What the unpaired degradation fit (`cyclesr data fit-degradation`, the RealSR-style row's and `hr_to_lr:
fitted`'s) learned, next to the operator's truth. The truth's linear part is the least-squares kernel of the
operator's own test pairs (the 20×20 HR kernel, decimation on bicubic's grid, that maps each test HR closest to
its LR: what a kernel *can* explain of the operator, phase included); its remainder, the residual's standard
deviation, bounds what noise and compression add. Kernels are compared by their central second moments (σ along
the two principal axes and the angle), which a global shift, not learnable unpaired, does not change.

A second table shows what CycleSR's G takes from the same real LR when training starts (configs/demo.yaml's
`input_blur: auto`, `jpeg_quality: auto` and `real_noise`, measured by the trainer's own code) beside the same truth.

    python benchmarks/quality_fits.py --data runs/quality/data [--operators blur,camera]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cyclesr_dist.config import load_config  # noqa: E402
from cyclesr_dist.cyclesr.measured import real_noise_bank, with_measured_recipe  # noqa: E402
from cyclesr_dist.data.images import list_images, load_rgb  # noqa: E402

SIZE, SCALE, SAMPLES = 20, 4, 20000  # kernel taps per side; LR pixels drawn per test image for the fit


def moments(kernel: np.ndarray) -> tuple[float, float, float]:
    """(σ major, σ minor, angle in degrees) of the kernel's central second moments (signed taps)."""
    k = kernel / kernel.sum()
    t = np.arange(k.shape[0]) - (k.shape[0] - 1) / 2
    y, x = np.meshgrid(t, t, indexing="ij")
    my, mx = (k * y).sum(), (k * x).sum()
    cyy, cxx, cxy = (k * (y - my) ** 2).sum(), (k * (x - mx) ** 2).sum(), (k * (y - my) * (x - mx)).sum()
    values, vectors = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]))
    major = vectors[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0])) % 180
    return math.sqrt(max(values[1], 0)), math.sqrt(max(values[0], 0)), angle


def paired_kernel(data: Path, op: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The least-squares HR kernel of the operator's test pairs, and the residual's σ (grey levels)."""
    pad = (SIZE - SCALE) // 2
    ata, atb, btb, count = np.zeros((SIZE * SIZE,) * 2), np.zeros(SIZE * SIZE), 0.0, 0
    for hr_path in list_images(data / op / "test" / "hr"):
        hr = load_rgb(hr_path).astype(np.float64).mean(axis=-1)  # grey: one kernel for every channel
        lr = load_rgb(data / op / "test" / "lr" / hr_path.name).astype(np.float64).mean(axis=-1)
        padded = np.pad(hr, pad, mode="symmetric")
        rows = rng.integers(0, lr.shape[0], SAMPLES)
        cols = rng.integers(0, lr.shape[1], SAMPLES)
        patches = np.stack(
            [
                padded[SCALE * r : SCALE * r + SIZE, SCALE * c : SCALE * c + SIZE].ravel()
                for r, c in zip(rows, cols, strict=True)
            ]
        )
        target = lr[rows, cols]
        ata += patches.T @ patches
        atb += patches.T @ target
        btb += float(target @ target)
        count += len(target)
    kernel = np.linalg.solve(ata + 1e-3 * np.eye(len(atb)), atb)
    residual = (btb - 2 * kernel @ atb + kernel @ ata @ kernel) / count
    return kernel.reshape(SIZE, SIZE), math.sqrt(max(residual, 0.0))


def g_measured(data: Path, op: str) -> dict[str, float | list[int] | int]:
    """What G's start-up measurements (configs/demo.yaml's, on the operator's HR and real-LR folders) find: the input
    blur σ in LR px, the JPEG range (0: stage off) and the noise bank's std in grey levels (0: real_noise off)."""
    config = load_config(REPO / "configs" / "demo.yaml", [f"data.root={data / op}"])
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's own lines; the table says it
        args = with_measured_recipe(config).model.generator.args
        bank = real_noise_bank(config)
    noise = float(bank.std()) * 127.5 if len(bank) else 0.0
    return {"input_blur": args["input_blur"], "jpeg_quality": args["jpeg_quality"], "noise": noise}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "runs" / "quality" / "data"))
    p.add_argument("--operators", default="blur,noise_jpeg,camera,downscale_motion,resize_chain,phone,webcam")
    args = p.parse_args(argv)
    data = Path(args.data)
    print(
        "| operator | kernel σ major / minor, angle: paired LS (truth) | unpaired fit | fit's noise σ at mid-grey | "
        "LS residual σ | fit's JPEG range |"
    )
    print("|---|---|---|---|---|---|")
    truths = {}
    for op in [o.strip() for o in args.operators.split(",") if o.strip()]:
        truth, residual = paired_kernel(data, op, np.random.default_rng(0))
        t = truths[op] = moments(truth), residual
        fit_file = data / op / "fitted.npz"
        if not fit_file.is_file():
            print(f"| {op} | {t[0][0]:.2f} / {t[0][1]:.2f}, {t[0][2]:.0f}° | (no fit: run the suite's realsr row) | | "
                  f"{residual:.2f} | |")  # fmt: skip
            continue
        with np.load(fit_file) as f:
            fitted, (a, b), jpeg = f["kernel"], f["noise_levels"], f["jpeg_range"]
        u = moments(fitted)
        noise = 255 * math.sqrt(a * 0.5 + b)
        print(
            f"| {op} | {t[0][0]:.2f} / {t[0][1]:.2f}, {t[0][2]:.0f}° | {u[0]:.2f} / {u[1]:.2f}, {u[2]:.0f}° | "
            f"{noise:.2f} | {residual:.2f} | {jpeg[0]}–{jpeg[1]} |",
            flush=True,
        )
    print(
        "\nCycleSR's G, measured on the same real LR when training starts (input blur: σ in LR px, then the HR-px σ of"
        " the sampled clean LR's σ 1 blur and it together, to set beside the kernels above):\n"
    )
    print("| operator | paired LS kernel σ major / minor | G's input blur σ (HR px equivalent) | LS residual σ | "
          "G's noise bank std | G's JPEG range |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for op, (t, residual) in truths.items():
        g = g_measured(data, op)
        blur = g["input_blur"]
        jpeg = g["jpeg_quality"]
        print(
            f"| {op} | {t[0]:.2f} / {t[1]:.2f} | {blur:.2f} ({math.hypot(1.0, SCALE * blur):.2f}) | {residual:.2f} | "
            f"{g['noise']:.2f} | {f'{jpeg[0]}–{jpeg[1]}' if jpeg else 'off'} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
