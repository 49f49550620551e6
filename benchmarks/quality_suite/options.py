"""quality.py's command line: the rows, operators, networks, recipe switches and budget of a benchmark run, with
their defaults (the small recipe; --production swaps in configs/cyclesr.yaml's networks)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cyclesr_dist.cyclesr.degradation_fit import FitSettings
from cyclesr_dist.data.images import CLEAN_LR

from .report import ROWS

REPO = Path(__file__).resolve().parents[2]
TRAINED = ROWS[1:]  # every row but bicubic
DEFAULT_OPERATORS = ["blur", "noise_jpeg", "camera", "downscale_motion", "resize_chain", "phone", "webcam"]
# G's JPEG quality measured on the real LR: its range (auto), or its median as a learned start (auto-median)
MEASURED = ("auto", "auto-median")
# Two seeds of the shipped recipe differ by 0.057 dB (std) per operator by best-shift PSNR, so by ~0.025 in a mean
# over five: a variant must beat the shipped recipe by twice that before it replaces it (docs/quality.md)
LOO_MARGIN = 0.05


def input_blur_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a Gaussian σ in LR px or auto, got {text!r}") from None


def jpeg_quality_arg(text: str) -> float | str:
    if text in MEASURED:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a quality in [10, 100], 0 (off) or one of {', '.join(MEASURED)}") from None


def fine_cap_arg(text: str) -> float | None:
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cap in dB or none, got {text!r}") from None


def parse_options(argv: list[str], doc: str) -> argparse.Namespace:
    """quality.py's command line (`doc`: its docstring, whose first paragraph is the description)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "quality"), help="runs, configs, logs, data, results")
    p.add_argument("--cache", default=str(REPO / "data" / "photo-cache"), help="where the .debs are kept and unpacked")
    p.add_argument("--deb", action="append", default=[], metavar="FILE", help="use this .deb instead of apt-get")
    p.add_argument("--operators", default=",".join(DEFAULT_OPERATORS), help="degradations, comma-separated")
    p.add_argument("--models", default=",".join(TRAINED), help="rows to train and score (bicubic always)")
    p.add_argument("--jobs", type=int, default=1, help="training runs at once (OMP_NUM_THREADS = cores // jobs)")
    p.add_argument("--test-crop", type=int, default=1024, help="test HR = centre crop of at most this side")
    p.add_argument("--sr-net", default="vdsr_lr")
    p.add_argument("--sr-args", default='{"nf": 32, "nb": 6, "bicubic_skip": true}', help="JSON args of the SR net")
    p.add_argument("--ngf", type=int, default=16, help="CycleSR generators' width")
    p.add_argument("--n-blocks", type=int, default=3, help="CycleSR generators' residual blocks")
    p.add_argument("--ndf", type=int, default=16, help="CycleSR discriminators' width")
    p.add_argument("--g-up-mode", default="transpose", help="generators' upsampling: transpose|pixelshuffle|resize")
    p.add_argument("--g-residual", action=argparse.BooleanOptionalAction, default=True, help="identity-skip generators")
    p.add_argument("--g-downsampling", type=int, default=0, help="generators' stride-2 stages (reference: 2)")
    p.add_argument("--g-noise-channels", type=int, default=3, help="noise channels fed to the generators")
    p.add_argument("--g-noise-at", default="tail", help="where the noise channels enter: input|tail")
    p.add_argument(
        "--g-jpeg-quality",
        type=jpeg_quality_arg,
        default="auto",
        help="G ends in a JPEG at this learned quality (0 = off); auto: at qualities drawn from the range measured "
        "on the operator's real LR; auto-median: learned from their median",
    )
    p.add_argument(
        "--g-input-blur",
        type=input_blur_arg,
        default="auto",
        help="G first blurs its input by a Gaussian of this σ (LR px; 0 = off); auto: the σ the trainer measures "
        "on the operator's real LR against the HR photos (input_blur: auto)",
    )
    p.add_argument(
        "--g-real-noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="G adds samples of the real LR's noise (patches of its flattest regions) before its JPEG stage "
        "(real_noise, as configs/demo.yaml; off where the real LR has too few flat patches)",
    )
    p.add_argument("--clean-lr", default="sampled", help=f"G's clean LR (data.hr_to_lr): {'|'.join(CLEAN_LR)}")
    p.add_argument("--content-low-pass", type=float, default=1.0, help="cycle/identity L1 on blur_σ only (0 = full)")
    p.add_argument("--d-high-pass", type=float, default=1.0, help="discriminators see x - blur_σ(x); 0 = full band")
    p.add_argument("--sr-lr", type=float, default=1e-3, help="SR learning rate of every trained row (as the demo)")
    p.add_argument("--cycle-sr-lam", type=float, default=1000.0, help="weight of the SR loss in CycleSR's G update")
    p.add_argument(
        "--cycle-sr-fine-cap", type=fine_cap_arg, default=2.0,
        help="loss.cycle_sr_fine_cap: that weight cut once G's fine band passes the real LR's by this many dB "
        "(the shipped 2; none: the reference's constant weight)",
    )  # fmt: skip
    p.add_argument("--num-workers", type=int, default=1, help="data-loader workers per training run")
    p.add_argument("--hr-patch", type=int, default=None, help="HR crop side (default 96; 128 with --production)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--translation-epochs", type=int, default=6, help="CycleSR epochs before the SR net trains")
    p.add_argument("--pretrain-epochs", type=int, default=4, help="CycleSR SR pre-training epochs")
    p.add_argument("--joint-epochs", type=int, default=16, help="CycleSR joint epochs")
    p.add_argument("--decay-epochs", type=int, default=8, help="final epochs with linearly decaying LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="for evaluation")
    p.add_argument("--tile", type=int, default=0, help="evaluation tile size (0 = whole image)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="trainer override")
    p.add_argument(
        "--tag",
        default="",
        help="CycleSR variant name: runs in OP/cyclesr-TAG, results in WORK/results-TAG.json; baselines shared",
    )
    p.add_argument("--max-shift", type=int, default=4, help="also report the best PSNR over shifts of ±K HR px")
    p.add_argument(
        "--shift-steps",
        type=int,
        default=2,
        help="best-shift grid steps per HR px (2: half pixels, as the operators' grid offsets; 1: the reference's)",
    )
    p.add_argument(
        "--time-to-quality",
        action="store_true",
        help="keep CycleSR's checkpoint of every epoch and report when its SR net first passes bicubic and blind",
    )
    p.add_argument(
        "--curve-every",
        type=int,
        default=0,
        help="time to quality: score the checkpoints every N SR updates (and the last); 0 = every kept one",
    )
    p.add_argument(
        "--candidates",
        default="",
        help="comma-separated CycleSR variants (tags; `default` = the untagged run) already run on these operators: "
        "also print the leave-one-operator-out table (each operator scored by the variant the others choose)",
    )
    p.add_argument(
        "--loo-margin",
        type=float,
        default=LOO_MARGIN,
        help="leave-one-out: a candidate replaces the first (the shipped recipe) only if the other operators' mean "
        "best-shift PSNR is higher by more than this many dB",
    )
    p.add_argument("--fit-steps", type=int, default=FitSettings.steps, help="RealSR-style row: degradation fit steps")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 scenes per split, 5-step epochs, 256² tests")
    p.add_argument(
        "--production",
        action="store_true",
        help="every trained row with configs/cyclesr.yaml's networks, losses, learning rates and update options "
        "(the generator/discriminator/SR/learning-rate arguments above are ignored); crops (LR 32² unless "
        "--hr-patch), batch, precision (fp32 unless --set train.mixed_precision=bf16) and the step budget stay "
        "this command's; runs under WORK/production",
    )
    args = p.parse_args(argv)
    if args.hr_patch is None:  # a 3-layer PatchGAN needs more than the small recipe's 24² LR crops
        args.hr_patch = 128 if args.production else 96
    if args.quick:
        args.steps_per_epoch, args.translation_epochs, args.pretrain_epochs = 5, 1, 1
        args.joint_epochs, args.decay_epochs, args.test_crop = 1, 1, min(args.test_crop, 256)
        args.fit_steps = 20
    return args
