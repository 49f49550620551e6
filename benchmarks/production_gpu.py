"""configs/cyclesr.yaml trained at its own crops (HR 480², batch 64, bf16) on one quality-suite operator, in one
device slot: samples/s per stage, MFU, and the SR net's test PSNR at fixed step counts (issue: the production
config trained before anyone pays for a cluster). The CPU curve beside it is `quality.py --production`'s.

    # here, after `python benchmarks/quality.py` has built runs/quality/data (the machine with the GPU has no
    # package index and no photos): the operator's photos, HR as lossless WebP, ~50 MB
    python benchmarks/production_gpu.py pack --operator blur
    # there (gpu_perf.sh production), carrying .gpu-data/ and .whl/
    python3 benchmarks/production_gpu.py run --data .gpu-data/blur --out runs/gpu-perf/production --seconds 420

The stages are shortened to fit a slot (translation 100 steps, SR pre-training 100, then joint; the config's own
schedule is 500 / 100 / 19,400 steps): the step times are the config's, the PSNR curve is an early one. A second
call resumes the run from its last checkpoint (checkpoint.resume: auto) and extends the curve.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from cyclesr_dist.data.images import list_images, load_rgb  # noqa: E402
from cyclesr_dist.testing import read_train_log  # noqa: E402

PRODUCTION = ROOT / "configs" / "cyclesr.yaml"


def pack(operator: str, data: Path, out: Path) -> None:
    """The operator's training HR (lossless WebP: the same pixels in 72 % of the PNG bytes), real LR and paired
    test set, laid out as the trainer's folder kind and the suite's test loader read them."""
    src = data / operator
    if not (src / "hr").is_dir():
        raise SystemExit(f"{src}/hr not found: build the suite's data first (python benchmarks/quality.py)")
    dst = out / operator
    shutil.rmtree(dst, ignore_errors=True)
    for sub in ("real_lr", "test/hr", "test/lr"):
        shutil.copytree(src / sub, dst / sub)
    (dst / "hr").mkdir(parents=True)
    for path in list_images(src / "hr"):
        Image.fromarray(load_rgb(path)).save(dst / "hr" / f"{path.stem}.webp", lossless=True, method=4)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"packed {src} -> {dst}: {size / 2**20:.1f} MiB; carry it as .gpu-data with .whl/")


def trainer_config(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """configs/cyclesr.yaml unchanged but for the data source, the stage boundaries, the step budget and the
    bookkeeping (a checkpoint every `--every` steps, all kept; no validation pass, no W&B)."""
    config = yaml.safe_load(PRODUCTION.read_text())
    spe = args.steps_per_epoch or config["data"]["steps_per_epoch"]
    config["output_dir"] = str(run_dir)
    config["max_steps"] = args.steps
    config["stages"] = {"sr_pretrain_epoch": 2, "joint_epoch": 3}  # translation 1 epoch, SR pre-training 1
    for key in ("hr_shards", "lr_shards", "val_shards"):
        config["data"].pop(key, None)
    config["data"].update(
        {"kind": "folder", "root": str(args.data), "num_workers": args.num_workers, "steps_per_epoch": spe}
    )
    if args.hr_patch:
        config["data"]["hr_patch"] = args.hr_patch
    if args.batch_size:
        config["data"]["batch_size"] = args.batch_size
    config["train"].update({"log_every": args.log_every, "image_every": 0, "val_every_epochs": 10**6})
    config["checkpoint"].update({"every_steps": args.every, "keep": 10**6})
    config["wandb"] = {"mode": "disabled"}
    if args.steps <= 2 * spe:
        raise SystemExit(f"--steps {args.steps}: must pass translation and SR pre-training ({2 * spe} steps)")
    return config


def stage_rates(run_dir: Path) -> dict[str, float]:
    """Median samples/s of each stage's logged intervals, the first of each stage (warm-up, compilation) left out."""
    by_stage: dict[str, list[float]] = {}
    for row in read_train_log(run_dir):
        if "samples_per_s" in row and "stage" in row:
            by_stage.setdefault(row["stage"], []).append(row["samples_per_s"])
    return {s: statistics.median(v[1:] or v) for s, v in by_stage.items()}


def step_flops(config_path: Path, lr_size: int, batch_size: int) -> dict[str, int]:
    """Useful conv/matmul FLOPs of one optimised step per stage, counted on the meta device, for the config the
    trainer wrote into its run folder (its `auto` stages resolved to what it measured)."""
    from throughput.flops import count_step_flops

    from cyclesr_dist.config import load_config
    from cyclesr_dist.cyclesr import Stage

    config = load_config(config_path)
    stages = {"translation": Stage.TRANSLATION, "joint": Stage.JOINT}
    return {name: count_step_flops(config, lr_size, batch_size, st, "ours") for name, st in stages.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from quality_suite.data import load_test_pairs
    from quality_suite.ttq import sr_curve

    run_dir = args.out / "run"
    config = trainer_config(args, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = args.out / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", str(config_path)]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:  # a slot's budget: what is checkpointed by then is scored, and the next call resumes from it
        rc = subprocess.run(cmd, cwd=ROOT, timeout=args.seconds, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    train_s = time.perf_counter() - t0

    device = "cuda" if torch.cuda.is_available() else "cpu"
    test = args.data / "test"
    scenes = [p.stem for p in list_images(test / "hr")][: args.test_scenes]
    pairs = load_test_pairs(args.data.parent, args.data.name, scenes)
    pairs = [(n, lr[: args.test_lr, : args.test_lr], hr[: 4 * args.test_lr, : 4 * args.test_lr]) for n, lr, hr in pairs]
    sr_start = config["data"]["steps_per_epoch"] * (config["stages"]["sr_pretrain_epoch"] - 1)
    curve = sr_curve(run_dir, pairs, sr_start, device, 0, 0)
    bicubic = curve[-1]["bicubic_psnr_rgb"] if curve else None

    rates = stage_rates(run_dir)
    batch, lr_size = config["data"]["batch_size"], config["data"]["hr_patch"] // config["data"]["scale"]
    flops = step_flops(run_dir / "config.yaml", lr_size, batch)
    mfu = {s: flops[s] * rates[s] / batch / (args.peak_tflops * 1e12) for s in flops if s in rates}
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "train_rc": rc,
        "train_wall_s": train_s,
        "batch": batch,
        "lr_size": lr_size,
        "samples_per_s": rates,
        "step_ms": {s: 1000 * batch / r for s, r in rates.items()},
        "step_tflop": {s: f / 1e12 for s, f in flops.items()},
        "mfu": mfu,
        "peak_tflops": args.peak_tflops,
        "test": {"scenes": scenes, "lr_crop": args.test_lr, "bicubic_psnr": bicubic},
        "curve": curve,
    }
    print(report(result))
    return result


def report(r: dict[str, Any]) -> str:
    lines = [
        f"configs/cyclesr.yaml on {r['device']}: LR {r['lr_size']}², batch {r['batch']}, bf16; "
        f"training {r['train_wall_s']:.0f} s (exit {r['train_rc']})",
        "",
        "| stage | step ms | samples/s | TFLOP/step | MFU |",
        "|---|---:|---:|---:|---:|",
    ]
    for s, rate in r["samples_per_s"].items():
        flop = r["step_tflop"].get(s)
        mfu = r["mfu"].get(s)
        lines.append(
            f"| {s} | {r['step_ms'][s]:.0f} | {rate:.1f} | {flop:.1f} | {100 * mfu:.1f} % |"
            if flop is not None and mfu is not None
            else f"| {s} | {r['step_ms'][s]:.0f} | {rate:.1f} | — | — |"
        )
    test = r["test"]
    bicubic = f"{test['bicubic_psnr']:.2f} dB" if test["bicubic_psnr"] is not None else "not scored (no checkpoint)"
    lines += ["", f"test PSNR (RGB), {len(test['scenes'])} scenes, bicubic {bicubic}:", ""]
    lines += ["| step | SR updates | training s | PSNR |", "|---:|---:|---:|---:|"]
    for p in r["curve"]:
        secs = f"{p['train_s']:.0f}" if p.get("train_s") is not None else "—"
        lines.append(f"| {p['step']} | {p['sr_updates']} | {secs} | {p['psnr_rgb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="copy an operator's suite data into .gpu-data/ (run here)")
    pk.add_argument("--operator", default="blur")
    pk.add_argument("--data", type=Path, default=ROOT / "runs" / "quality" / "data")
    pk.add_argument("--out", type=Path, default=ROOT / ".gpu-data")
    rn = sub.add_parser("run", help="train and score (run on the GPU machine)")
    rn.add_argument("--data", type=Path, default=ROOT / ".gpu-data" / "blur")
    rn.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-perf" / "production")
    rn.add_argument("--seconds", type=float, default=420, help="training budget of this call")
    rn.add_argument("--steps", type=int, default=2000, help="max_steps (the budget usually ends it first)")
    rn.add_argument("--steps-per-epoch", type=int, default=0, help="0: the config's (100); sets the stage lengths")
    rn.add_argument("--every", type=int, default=100, help="checkpoint (and PSNR point) every N steps")
    rn.add_argument("--log-every", type=int, default=20)
    rn.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    rn.add_argument("--hr-patch", type=int, default=0, help="0: the config's (480); a CPU rehearsal uses less")
    rn.add_argument("--batch-size", type=int, default=0, help="0: the config's (64)")
    rn.add_argument("--test-scenes", type=int, default=7)
    rn.add_argument("--test-lr", type=int, default=256, help="test LR crop side (top-left)")
    rn.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the device (MFU)")
    rn.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.operator, args.data, args.out)
        return 0
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
