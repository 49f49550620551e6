"""`cyclesr checkpoints`: tools for a run's checkpoints."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    tools = sub.add_parser("checkpoints", help="checkpoint tools").add_subparsers(dest="ckpt_command", required=True)
    p = tools.add_parser("list", help="a run's checkpoints and their state")
    p.add_argument("run_dir", metavar="RUN", help="run output folder (or its checkpoints/ folder)")
    p.add_argument("--verify", action="store_true", help="also check every file's SHA-256 (reads every byte)")
    p.set_defaults(run=run_list)
    p = tools.add_parser(
        "to-universal",
        help="convert a DeepSpeed checkpoint step folder so it resumes at another number of processes",
    )
    p.add_argument("step_dir", help="checkpoints/step-XXXXXXXX folder written by the DeepSpeed backend")
    p.add_argument("--workers", type=int, default=1, help="extraction/merge processes (default 1)")
    p.set_defaults(run=run_to_universal)


def run_list(args: argparse.Namespace) -> int:
    """One line per step folder: step, processes, size, state; exit 1 when the newest one is not intact."""
    from pathlib import Path

    from ..checkpoint_format import LATEST, STEP_DIR, DamagedCheckpoint, read_checkpoint, verify
    from ..errors import UserError

    root = Path(args.run_dir)
    root = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    entries = (
        sorted(
            (p for p in root.iterdir() if STEP_DIR.match(p.name.removeprefix(".partial-").removeprefix(".damaged-"))),
            key=lambda p: p.name.rsplit("-", 1)[-1],
        )
        if root.is_dir()
        else []
    )
    if not entries:
        raise UserError(f"no checkpoints under {root}: give a run's output folder or its checkpoints/ folder")
    pointer = (root / LATEST).read_text().strip() if (root / LATEST).is_file() else ""
    newest_ok = None
    for path in entries:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        if path.name.startswith(".partial-"):
            state, procs = "incomplete (a save that did not finish; ignored)", "?"
        elif path.name.startswith(".damaged-"):
            state, procs = "damaged earlier (moved aside; ignored)", "?"
        else:
            try:
                checkpoint = read_checkpoint(path)
                procs = str(checkpoint.meta.get("world_size", "?"))
                problems = verify(checkpoint, checksums=args.verify)
            except DamagedCheckpoint as exn:
                procs, problems = "?", [str(exn)]
            state = ("verified" if args.verify else "complete") if not problems else "DAMAGED: " + "; ".join(problems)
            newest_ok = path if not problems else None
        marker = " <- latest" if path.name == pointer else ""
        print(f"{path.name:<28} {procs:>3} procs {size:>9.1f} MB  {state}{marker}")
    return 0 if newest_ok is not None else 1


def run_to_universal(args: argparse.Namespace) -> int:
    from ..engine.backends.deepspeed.universal import convert_to_universal

    for path in convert_to_universal(args.step_dir, args.workers):
        print(f"wrote {path}")
    return 0
