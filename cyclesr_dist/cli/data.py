"""`cyclesr demo-data`, `cyclesr data shard`, `cyclesr data jpeg-quality` and `cyclesr data fit-degradation`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("demo-data", help="build the small unpaired demo set from photos scikit-image ships")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_demo_data)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("shard", help="write WebDataset tar shards of HR/LR crops")
    add_shard_arguments(p)
    p.set_defaults(run=run_shard)
    p = data.add_parser("jpeg-quality", help="measure the JPEG quality of the real LR photos (for G's JPEG stage)")
    p.add_argument("lr_dir", help="folder of real low-resolution photos (searched recursively)")
    p.add_argument("--per-image", action="store_true", help="also print each image's estimate")
    p.set_defaults(run=run_jpeg_quality)
    p = data.add_parser(
        "fit-degradation",
        help="fit the real LR photos' degradation (kernel, noise, JPEG) without pairs; train on it with "
        "data.hr_to_lr=fitted:FILE",
    )
    p.add_argument("--hr", required=True, help="folder of clean HR photos (searched recursively)")
    p.add_argument("--lr", required=True, help="folder of real low-resolution photos (unpaired)")
    p.add_argument("--out", required=True, help="file to write (.npz)")
    p.add_argument("--scale", type=int, default=4, help="HR / LR size (default 4)")
    p.add_argument("--steps", type=int, default=600, help="adversarial fitting steps (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_fit_degradation)


def run_demo_data(args: argparse.Namespace) -> int:
    from ..data.demo import build_demo_data

    manifest = build_demo_data(args.out_dir, seed=args.seed)
    print(
        f"demo data in {args.out_dir}: {len(manifest['hr'])} HR photos, {len(manifest['real_lr'])} real-LR "
        f"photos, {len(manifest['val'])} validation pairs"
    )
    return 0


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hr", required=True, help="folder of clean HR photos (searched recursively)")
    parser.add_argument("--lr", required=True, help="folder of real low-resolution photos (unpaired)")
    parser.add_argument("--out", required=True, help="output folder for the shards and manifest.json")
    parser.add_argument("--val-hr", default=None, help="paired validation HR images (matched to --val-lr by path)")
    parser.add_argument("--val-lr", default=None, help="paired validation LR images")
    parser.add_argument("--hr-crop", type=int, default=480, help="HR crop size (default 480)")
    parser.add_argument("--lr-crop", type=int, default=120, help="LR crop size (default 120)")
    parser.add_argument("--stride", type=int, default=None, help="HR crop stride (default: the crop size)")
    parser.add_argument("--lr-stride", type=int, default=None, help="LR crop stride (default: stride scaled)")
    parser.add_argument("--shard-size", type=int, default=None, help="samples per shard (default 256)")
    parser.add_argument("--workers", type=int, default=None, help="decode/encode processes (default: all cores)")
    parser.add_argument(
        "--encoding",
        choices=["png", "npy"],
        default="png",
        help="how training crops are stored: png (default) or npy, the raw pixels: more disk, no decode in the loader",
    )


def run_shard(args: argparse.Namespace) -> int:
    from ..data.manifest import MANIFEST
    from ..data.shards import write_shards

    manifest = write_shards(
        args.hr,
        args.lr,
        args.out,
        val_hr_dir=args.val_hr,
        val_lr_dir=args.val_lr,
        hr_crop=args.hr_crop,
        lr_crop=args.lr_crop,
        stride=args.stride,
        lr_stride=args.lr_stride,
        shard_size=args.shard_size,
        workers=args.workers,
        encoding=args.encoding,
    )
    for name, split in manifest["splits"].items():
        files = f"{split['files']} files, " if "files" in split else ""
        print(f"{name}: {files}{split['samples']} samples in {len(split['shards'])} shards")
    print(f"skipped: {len(manifest['skipped'])} files")
    for item in manifest["skipped"]:
        print(f"  [{item['split']}] {item['path']}: {item['reason']}")
    print(f"manifest: {Path(args.out) / MANIFEST}")
    empty = [name for name in ("hr", "lr") if manifest["counts"][name] == 0]
    if empty:
        print(f"error: no usable images for {', '.join(empty)}: nothing to train on", file=sys.stderr)
        return 1
    return 0


def run_jpeg_quality(args: argparse.Namespace) -> int:
    from ..data.jpeg_estimate import estimate_folder, quality_summary
    from ..errors import BadInput

    estimates = estimate_folder(args.lr_dir)
    if not estimates:
        raise BadInput(f"no images in {args.lr_dir}: give the folder of real LR photos")
    if args.per_image:
        for name, quality in estimates.items():
            print(f"  {name}: {quality if quality is not None else 'no JPEG quantisation found'}")
    summary = quality_summary(estimates)
    if summary is None:
        print(
            f"{len(estimates)} images, none with a JPEG quantisation: not JPEG-compressed, resized after it, or above "
            "quality ~95; leave model.generator.args.jpeg_quality off"
        )
        return 0
    print(
        f"{summary['images']} of {len(estimates)} images JPEG-compressed, quality {summary['low']}–{summary['high']} "
        f"(median {summary['median']}): model.generator.args.jpeg_quality=[{summary['low']},{summary['high']}]"
    )
    return 0


def run_fit_degradation(args: argparse.Namespace) -> int:
    from ..cyclesr.degradation_fit import FitSettings, describe_fit, fit_degradation, save_fit
    from ..data.images import list_images, read_image
    from ..errors import BadInput

    if args.steps < 1 or args.scale < 1:
        raise BadInput(f"--steps and --scale must be at least 1, got {args.steps} and {args.scale}")
    photos = {}
    for flag, folder in (("--hr", args.hr), ("--lr", args.lr)):
        photos[flag] = [read_image(p) for p in list_images(folder)]
        if not photos[flag]:
            raise BadInput(
                f"{flag} {folder}: no images; give the folder of {'clean HR' if flag == '--hr' else 'real LR'} photos"
            )
    try:
        fit = fit_degradation(photos["--hr"], photos["--lr"], args.scale, FitSettings(steps=args.steps, seed=args.seed))
    except ValueError as err:
        raise BadInput(str(err)) from None
    path = save_fit(fit, args.out)
    print(f"{describe_fit(fit)} -> {path} (train on it: data.hr_to_lr=fitted:{path})")
    return 0
