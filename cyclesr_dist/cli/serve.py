"""`cyclesr eval`, `cyclesr upscale`, `cyclesr export`: the trained SR network, without the training stack."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput, InputNotFound


def non_negative(text: str) -> int:
    """argparse type: a whole number ≥ 0 (a tile or overlap in LR pixels)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of LR pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more LR pixels, got {value}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM of a checkpoint on paired LR/HR folders")
    p.add_argument("--checkpoint", required=True, help="exported SR file or training checkpoint directory")
    p.add_argument("--lr", required=True, help="folder of LR images")
    p.add_argument("--hr", required=True, help="folder of HR images (paired with LR by relative path and stem)")
    p.add_argument("--json", default=None, help="also write the full results (per image + mean) here")
    p.add_argument("--max-shift", type=int, default=0, help="also report the best PSNR over shifts of ±K px")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--tile", type=non_negative, default=0, help="tile size in LR pixels (0 = whole image at once)")
    p.add_argument("--overlap", type=non_negative, default=16, help="LR pixels of context around each tile")
    p.add_argument(
        "--crop-hr", action="store_true", help="score HR images larger than scale x LR on their top-left part"
    )
    p.set_defaults(run=run_eval)

    p = sub.add_parser("upscale", help="×4 super-resolve images with a checkpoint")
    p.add_argument("--checkpoint", required=True, help="exported SR file or training checkpoint directory")
    p.add_argument("--out", required=True, help="output folder; writes <stem>.png per input")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="input images (or folders of images)")
    p.add_argument(
        "--tile", type=non_negative, default=None, help="tile size in LR pixels (default 256); 0 = whole image at once"
    )
    p.add_argument("--overlap", type=non_negative, default=16, help="LR pixels of context around each tile")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(run=run_upscale)

    p = sub.add_parser("export", help="export the SR network alone (weights + its config): torch, safetensors, ONNX")
    p.add_argument("--checkpoint", required=True, help="training checkpoint directory (or an exported file)")
    p.add_argument("--out", required=True, help="file to write (e.g. sr.pt); each format replaces the suffix")
    p.add_argument(
        "--format",
        default="torch",
        help="comma-separated: torch (.pt), safetensors, onnx (float32 RGB NCHW in [0, 1], dynamic size); "
        "default torch",
    )
    p.set_defaults(run=run_export)


def run_eval(args: argparse.Namespace) -> int:
    from ..data.images import read_image
    from ..data.pairing import pair_files
    from ..serve.evaluate import evaluate_pairs, format_table, write_json
    from ..serve.export import load_sr
    from ..serve.tiling import net_upscale

    net = load_sr(args.checkpoint, device=args.device)
    scale = net_upscale(net)
    pairing = pair_files(args.lr, args.hr, scale)
    if pairing.duplicates:
        dropped, kept = pairing.duplicates[0]
        raise BadInput(f"{dropped} and {kept} have the same name: keep one of them")
    if not pairing.pairs:
        raise BadInput(f"no LR image in {args.lr} has an HR image of the same name in {args.hr}")
    if pairing.lr_only:
        names = [p.stem for p in pairing.lr_only]
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        print(f"cyclesr eval: warning: {len(names)} LR image(s) without HR, skipped: {shown}", file=sys.stderr)
    result = evaluate_pairs(
        net,
        ((name, read_image(lr), read_image(hr)) for name, lr, hr in pairing.pairs),
        scale=scale,
        max_shift=args.max_shift,
        device=args.device,
        tile=args.tile or None,
        overlap=args.overlap,
        crop_hr=args.crop_hr,
    )
    print(format_table(result))
    if args.json:
        result.update({"checkpoint": str(args.checkpoint), "lr_dir": str(args.lr), "hr_dir": str(args.hr)})
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _collect_inputs(items: list[str]) -> list[Path]:
    from ..data.images import list_images

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(list_images(p))
        elif p.is_file():
            paths.append(p)
        else:
            raise InputNotFound(f"input not found: {p}")
    if not paths:
        raise InputNotFound(f"no images found in {' '.join(items)}")
    return paths


def run_upscale(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.images import check_image, read_image, save_rgb
    from ..serve.export import load_sr
    from ..serve.tiling import net_upscale, upscale_image

    # Every check before the first output is written: a bad input costs nothing.
    inputs = _collect_inputs(args.images)
    out_dir = Path(args.out)
    targets = [out_dir / f"{p.stem}.png" for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, targets, strict=True):
        if dst in seen:
            raise BadInput(f"{src} and {seen[dst]} would both be written to {dst}")
        if dst.resolve() == src.resolve():
            raise BadInput(f"refusing to overwrite the input {src}; choose another --out")
        check_image(src)
        seen[dst] = src
    net = load_sr(args.checkpoint, device=args.device)
    scale = net_upscale(net)
    writable_folder(out_dir, "--out")
    # a progress bar for many images on a terminal; the per-image lines print above it
    bar = tqdm(total=len(inputs), unit="image", disable=len(inputs) < 2 or not sys.stderr.isatty())
    for src, dst in zip(inputs, targets, strict=True):
        lr = read_image(src)
        tile = {} if args.tile is None else {"tile": args.tile}  # None: the library's measured default
        sr = upscale_image(net, lr, **tile, overlap=args.overlap, device=args.device)
        save_rgb(sr, dst)
        bar.write(f"{src} ({lr.shape[1]}x{lr.shape[0]}) -> {dst} ({sr.shape[1]}x{sr.shape[0]}, x{scale})")
        bar.update()
    bar.close()
    return 0


def writable_folder(folder: Path, flag: str) -> None:
    """Create `folder` (and its parents) or stop with one line naming it: a file in the way, no permission."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(f"{flag} {folder}: cannot create this folder ({err.strerror}); choose another") from None
    if not os.access(folder, os.W_OK):
        raise BadInput(f"{flag} {folder}: cannot write in this folder (no permission); choose another")


def run_export(args: argparse.Namespace) -> int:
    from ..serve.export import FORMATS, build_sr, export_formats, read_sr_source
    from ..serve.model_card import write_model_card
    from ..serve.tiling import net_upscale

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"--format {args.format!r}: unknown {unknown or 'none given'}; valid: {', '.join(FORMATS)}")
    source = read_sr_source(args.checkpoint)
    writable_folder(Path(args.out).parent, "--out")
    paths = export_formats(source, args.out, formats)
    net = build_sr(source.name, source.args, source.state_dict)
    card = write_model_card(
        Path(args.checkpoint), source.name, source.args, net_upscale(net), source.value_range, paths
    )
    n_params = sum(p.numel() for p in net.parameters())
    written = ", ".join(str(p) for p in [*paths, card])
    print(f"exported {source.name} {source.args} (x{net_upscale(net)}, {n_params / 1e6:.2f}M params) -> {written}")
    return 0
