"""The real trainer (train.py, demo config) as 1 process × 2 threads, 2 × 1 and 2 × 2 under `accelerate launch`
(gloo), in alternating rounds; samples/s read from its train_log.jsonl."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cyclesr_dist.testing import read_train_log

from .setups import ROOT


def launch_one(args, data: Path, out: Path, stage: str, nproc: int, threads: int, port: int) -> dict[str, Any] | None:
    """One run of the real trainer (train.py) on the demo config; samples/s from its train_log.jsonl."""
    if nproc > 1:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
               "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
               "--dynamo_backend", "no", "train.py"]  # fmt: skip
    else:
        cmd = [sys.executable, "train.py"]
    stage_overrides = (
        ["stages.sr_pretrain_epoch=1000", "stages.joint_epoch=1000"]
        if stage == "translation"
        else ["stages.sr_pretrain_epoch=1", "stages.joint_epoch=1"]
    )
    cmd += ["--config", "configs/demo.yaml", f"data.root={data}", f"output_dir={out}",
            f"max_steps={args.launch_steps}", "data.steps_per_epoch=100000", "data.num_workers=0",
            f"train.log_every={args.launch_log_every}", "train.image_every=0", "train.val_every_epochs=100000",
            "checkpoint.every_steps=100000", "checkpoint.resume=none", "wandb.mode=disabled",
            *stage_overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"  launch {stage} {nproc}p failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        return None
    rates = [r["samples_per_s"] for r in read_train_log(out) if "samples_per_s" in r][
        1:
    ]  # the first interval is warm-up
    print(f"  launch {stage} {nproc}p×{threads}t: {statistics.median(rates):.2f} samples/s", flush=True)
    return {"stage": stage, "processes": nproc, "threads": threads, "rates": rates, "wall_s": wall, "load": load}


def launch_scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The real trainer under `accelerate launch` (gloo) with 1 and 2 CPU processes, in alternating rounds."""
    from cyclesr_dist.data.demo import build_demo_data

    results: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data_root) if args.data_root else Path(tmp) / "demo"
        if not args.data_root:
            build_demo_data(data)
        port = 29600 + os.getpid() % 300
        runs = [(stage, n, t) for stage in args.stages for n, t in ((1, 2), (2, 1), (2, 2))]
        for round_ in range(args.launch_rounds):
            for i, (stage, nproc, threads) in enumerate(runs if round_ % 2 == 0 else runs[::-1]):
                port += 1
                out = Path(tmp) / f"run_{round_}_{i}"
                r = launch_one(args, data, out, stage, nproc, threads, port)
                if r is not None:
                    results.setdefault((stage, nproc, threads), []).append(r)
    rows = []
    for (stage, nproc, threads), rs in results.items():
        rates = [x for r in rs for x in r["rates"]]
        rows.append(
            {
                "stage": stage,
                "processes": nproc,
                "threads": threads,
                "samples_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "wall_s": statistics.median(r["wall_s"] for r in rs),
                "load": statistics.median(r["load"] for r in rs),
                "runs": len(rs),
            }
        )
    return rows


def launch_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    print("\n### Trainer under accelerate launch (demo config, gloo, data.num_workers=0)\n", flush=True)
    rows = launch_scaling(args)
    base = {r["stage"]: r["samples_per_s"] for r in rows if r["processes"] == 1}
    print("\n| stage | processes × threads | samples/s (median) | min–max | × 1 process | wall s | load avg | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['processes']} × {r['threads']} | {r['samples_per_s']:.2f} "
            f"| {r['min']:.2f}–{r['max']:.2f} | {r['samples_per_s'] / base.get(r['stage'], float('nan')):.2f} "
            f"| {r['wall_s']:.0f} | {r['load']:.2f} | {r['runs']} |"
        )
    return rows
