"""`cyclesr` command line: one function per sub-command; the work happens in the modules they call."""

from __future__ import annotations

import argparse
import importlib
import sys


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.trainer import train

    return train(load_config(args.config, args.overrides))


def _demo_data(args: argparse.Namespace) -> int:
    from .data.demo import build_demo_data

    manifest = build_demo_data(args.out_dir, seed=args.seed)
    print(
        f"demo data in {args.out_dir}: {len(manifest['hr'])} HR photos, {len(manifest['real_lr'])} real-LR "
        f"photos, {len(manifest['val'])} validation pairs"
    )
    return 0


# Sub-commands whose arguments and work live in their own module: (parent, name, help) -> (module, add, run).
_MODULE_COMMANDS = [
    ("data", "shard", "write WebDataset tar shards of HR/LR crops", "cyclesr_dist.data.shards", "add_arguments", "run"),
    (
        None,
        "eval",
        "PSNR/SSIM of a checkpoint on paired LR/HR folders",
        "cyclesr_dist.evaluate",
        "add_arguments",
        "run",
    ),
    (
        None,
        "upscale",
        "×4 super-resolve images with a checkpoint",
        "cyclesr_dist.inference",
        "add_upscale_arguments",
        "run_upscale",
    ),
    (
        None,
        "export",
        "export the SR network alone (weights + its config)",
        "cyclesr_dist.inference",
        "add_export_arguments",
        "run_export",
    ),
    (
        None,
        "submit",
        "launch training with Submitit (Slurm, or --local)",
        "cyclesr_dist.launch.submit",
        "add_arguments",
        "run",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclesr", description="CycleSR: unpaired super-resolution training job")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) from a YAML config")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(func=_train)

    p = sub.add_parser("demo-data", help="build the small unpaired demo set from photos scikit-image ships")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo_data)

    parents = {
        None: sub,
        "data": sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True),
    }
    for parent, name, help_text, module_name, add, run in _MODULE_COMMANDS:
        module = importlib.import_module(module_name)
        p = parents[parent].add_parser(name, help=help_text)
        getattr(module, add)(p)
        p.set_defaults(func=getattr(module, run))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
