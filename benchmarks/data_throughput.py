"""Streaming-loader throughput against what one training process eats, on this machine, in one run.

    python benchmarks/data_throughput.py [--shards DIR | --encodings png npy] [--config configs/demo.yaml]

1. Shards: `--shards DIR` (written by `cyclesr data shard`), or the demo photos (`build_demo_data`) sharded here
   at the production crop sizes (HR 480², LR 120², `--hr-crop/--lr-crop`), so every sample costs what it costs on
   a cluster: one 480² PNG decode for HR and one 120² decode for real LR, then random crop + flip/rot90 + the
   on-the-fly clean LR, all as the config's `data` section says (`hr_to_lr`, `hr_augment`, `lr_augment`).
   `--encodings png npy` shards them both ways (`cyclesr data shard --encoding`) and times the loader on each.
2. Data rate: `StreamingUnpairedLoader` with 1 and 2 DataLoader workers (--workers), the config's per-process batch
   size and training patch; samples/s after a warm-up (a sample = one {hr, clean_lr, real_lr} triple = 2 decodes).
   `--loader-patch/--loader-batch` time the loader at another patch and batch (the reference's 480², 64).
   Then the bytes of one loader batch (uint8 pixels; and as float32, how batches crossed before) and, with
   `--device cuda`, the time of its copy to the GPU into model range, from pageable and from pinned memory; and
   the single-thread cost of each part of one HR sample's work in a worker.
3. Consumption: the demo training step (`cyclesr.CycleSR.optimize_parameters` with the config's networks from the
   registry, bare-loop `OptimizerOps`) on batches from the loader, for each stage (translation, SR pre-training,
   joint); the fastest stage is the hungriest consumer. samples/s = steps/s × batch size.

The phases run one after another (the data rate is measured without a training process competing for cores, as
with dedicated loader cores). Nothing is hard-coded: every number in the table is measured in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cyclesr_dist.config import DataConfig, load_config  # noqa: E402
from cyclesr_dist.cyclesr import CycleSR, Stage, build_networks, build_optimizers  # noqa: E402
from cyclesr_dist.cyclesr.measured import with_measured_recipe  # noqa: E402
from cyclesr_dist.data.augment import random_patch  # noqa: E402
from cyclesr_dist.data.demo import build_demo_data  # noqa: E402
from cyclesr_dist.data.images import (  # noqa: E402
    SAMPLED_SIGMA,
    batch_to_model,
    clean_downscale,
    to_model_range,
    uint8_to_pixels,
)
from cyclesr_dist.data.manifest import read_manifest  # noqa: E402
from cyclesr_dist.data.shards import write_shards  # noqa: E402
from cyclesr_dist.data.stream import StreamingUnpairedLoader  # noqa: E402
from cyclesr_dist.data.stream.domain import decode_member  # noqa: E402
from cyclesr_dist.engine.backends.base import OptimizerOps  # noqa: E402
from cyclesr_dist.errors import UserError  # noqa: E402
from cyclesr_dist.torch_utils import filter2d, gaussian_kernel  # noqa: E402


def make_loader(
    shards: Path, data: DataConfig, workers: int, seed: int, shuffle_buffer: int
) -> StreamingUnpairedLoader:
    """The streaming loader over `shards` as a run with `data` builds it: patch, batch and the per-sample work
    (`hr_to_lr`, augmentations) of the config."""
    return StreamingUnpairedLoader(
        str(shards),
        str(shards),
        hr_patch=data.hr_patch,
        scale=data.scale,
        batch_size=data.batch_size,
        num_workers=workers,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        hr_to_lr=data.hr_to_lr,
        hr_augment=data.hr_augment,
        lr_augment=data.lr_augment,
    )


def loader_rate(shards: Path, workers: int, data: DataConfig, seconds: float) -> float:
    """Samples/s delivered to the caller by the loader with `workers` DataLoader workers (after warm-up)."""
    loader = make_loader(shards, data, workers, seed=0, shuffle_buffer=64)
    it = iter(loader)
    for _ in range(3 * max(1, workers)):  # warm-up: worker start, shuffle buffers filled
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += 1
    elapsed = time.perf_counter() - start
    del it
    return n * data.batch_size / elapsed


def median_ms(run: Callable[[], object], reps: int, sync: Callable[[], object] = lambda: None) -> float:
    """Median ms of `run` after one untimed call; `sync` before and inside the timed span (a device's queue)."""
    run()
    times = []
    for _ in range(reps):
        sync()
        tic = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - tic)
    return 1e3 * sorted(times)[reps // 2]


def transfer_ms(shards: Path, data: DataConfig, device: torch.device, reps: int = 20) -> dict:
    """MB per batch and ms per host-to-device copy (into model range) of the loader's batch as it comes (uint8
    pixels) and as float32 (how batches crossed before), from pageable and from pinned memory; times on CUDA only."""
    as_loaded = next(iter(make_loader(shards, data, workers=0, seed=2, shuffle_buffer=8)))
    forms = {"uint8 pixels (now)": as_loaded, "float32 (before)": batch_to_model(as_loaded)}
    out = {}
    for name, b in forms.items():
        row = {"mb": sum(t.nbytes for t in b.values()) / 1e6}
        for memory in ("pageable", "pinned") if device.type == "cuda" else ():
            src = {k: v.pin_memory() for k, v in b.items()} if memory == "pinned" else b
            row[f"{memory}_ms"] = median_ms(
                lambda src=src: batch_to_model(src, device), reps, lambda: torch.cuda.synchronize(device)
            )
        out[name] = row
    return out


def first_hr_member(shards: Path) -> dict:
    url = sorted(shards.glob("hr-*.tar"))[0]
    return next(iter(wds.DataPipeline(wds.SimpleShardList([str(url)]), wds.tarfile_to_samples())))


def crop_costs(shard_dirs: dict[str, Path], data: DataConfig, reps: int = 20) -> dict[str, float]:
    """Single-thread ms (median) of each part of one HR sample's work in a worker, on the shards' first HR member
    at the loader's patch: its decode (per encoding), crop + transform + the copy to 3xHxW, and each clean LR on the
    crop as the worker holds it, `sampled` also the long way (the Gaussian over every HR pixel, then bilinear: the
    code before)."""
    samples = {encoding: first_hr_member(shards) for encoding, shards in shard_dirs.items()}
    img, rng = decode_member(next(iter(samples.values())), min_side=1), np.random.default_rng(0)
    hr = to_model_range(uint8_to_pixels(random_patch(img, data.hr_patch, rng, data.hr_augment)))
    decodes = {
        f"read the crop ({e})": lambda sample=sample: decode_member(sample, min_side=1) for e, sample in samples.items()
    }
    parts = {
        **decodes,
        "crop + transform + the copy to 3xHxW": lambda: uint8_to_pixels(
            random_patch(img, data.hr_patch, rng, data.hr_augment)
        ),
        "clean LR `bicubic`": lambda: clean_downscale(hr, data.scale, "bicubic"),
        "clean LR `sampled`": lambda: clean_downscale(hr, data.scale, "sampled"),
        "clean LR `sampled` the long way (before)": lambda: F.interpolate(
            filter2d(hr[None], gaussian_kernel(SAMPLED_SIGMA)),
            scale_factor=1 / data.scale,
            mode="bilinear",
            antialias=False,
            align_corners=False,
        ),
    }
    return {name: median_ms(part, reps) for name, part in parts.items()}


def crop_costs_as_a_worker(shards: dict[str, Path], data: DataConfig) -> dict[str, float]:
    """`crop_costs` in a fresh process at one thread from the start, as a DataLoader worker computes (torch sets
    one thread there before any work): a process that computed at two threads first timed the long-way blur at
    9 ms instead of 26-33."""
    with multiprocessing.get_context("spawn").Pool(1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return pool.apply(crop_costs, (shards, data))


def step_rates(config_path: Path, shards: Path, seconds: float) -> tuple[dict[Stage, float], int]:
    """Samples/s one training process consumes per stage, with the config's networks and per-process batch."""
    cfg = load_config(config_path)
    # a generator setting of `auto` measured on these shards, as `cyclesr train` measures it on the user's data
    shard_data = dataclasses.replace(cfg.data, kind="webdataset", hr_shards=str(shards), lr_shards=str(shards))
    cfg = with_measured_recipe(dataclasses.replace(cfg, data=shard_data))
    torch.manual_seed(0)
    nets = build_networks(cfg.model)
    model = CycleSR(nets, cfg.loss, pool_seed=0)
    ops = OptimizerOps(build_optimizers(nets, cfg.optim), cfg.optim.grad_clip)
    batch_size = cfg.data.batch_size
    it = iter(make_loader(shards, cfg.data, workers=0, seed=1, shuffle_buffer=8))
    batches = [batch_to_model(next(it)) for _ in range(4)]
    rates = {}
    for stage in (Stage.TRANSLATION, Stage.SR_PRETRAIN, Stage.JOINT):
        for b in batches[:2]:  # warm-up (allocator, image pools)
            model.optimize_parameters(b, stage, ops)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            model.optimize_parameters(batches[n % len(batches)], stage, ops)
            n += 1
        rates[stage] = n * batch_size / (time.perf_counter() - start)
    return rates, batch_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, default=None, help="shard folder (default: demo photos, sharded here)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml", help="training config")
    parser.add_argument("--hr-crop", type=int, default=480)
    parser.add_argument("--lr-crop", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts to time")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    parser.add_argument("--loader-patch", type=int, default=0, help="HR patch for the loader (default: config's)")
    parser.add_argument("--loader-batch", type=int, default=0, help="batch for the loader (default: config's)")
    parser.add_argument("--device", default="cpu", help="also time the batch's copy to this device (cuda)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--encodings", nargs="+", choices=["png", "npy"], default=None, help="crop encodings to shard and time (png)"
    )
    args = parser.parse_args(argv)
    if args.shards is not None and args.encodings is not None:
        raise UserError("--encodings shards the demo photos here; --shards are written already (one encoding)")

    cfg = load_config(args.config)
    patch, loader_batch = args.loader_patch or cfg.data.hr_patch, args.loader_batch or cfg.data.batch_size
    loader_data = dataclasses.replace(cfg.data, hr_patch=patch, batch_size=loader_batch)
    with tempfile.TemporaryDirectory() as tmp:
        if args.shards is not None:
            shard_dirs = {read_manifest(args.shards).get("encoding", "png"): args.shards}
        else:
            build_demo_data(Path(tmp) / "demo", scale=cfg.data.scale)
            demo = Path(tmp) / "demo"
            shard_dirs = {e: Path(tmp) / f"shards-{e}" for e in args.encodings or ["png"]}
            sizes = dict(hr_crop=args.hr_crop, lr_crop=args.lr_crop, shard_size=1, workers=1)
            for encoding, out in shard_dirs.items():
                write_shards(demo / "hr", demo / "real_lr", out, **sizes, encoding=encoding)
        shards = next(iter(shard_dirs.values()))
        manifest = read_manifest(shards)
        per = {  # KiB per sample of each split, per encoding
            e: {
                d: sum(p.stat().st_size for p in where.glob(f"{d}-*.tar")) / 1024 / max(1, manifest["counts"][d])
                for d in ("hr", "lr")
            }
            for e, where in shard_dirs.items()
        }

        load_before = os.getloadavg()[0]
        rates = {
            (e, w): loader_rate(where, w, loader_data, args.seconds)
            for e, where in shard_dirs.items()
            for w in args.workers
        }
        transfer = transfer_ms(shards, loader_data, torch.device(args.device))
        costs = crop_costs_as_a_worker(shard_dirs, loader_data)
        steps, batch = step_rates(args.config, shards, args.seconds)
        load_after = os.getloadavg()[0]

    hungriest = max(steps, key=steps.get)
    print(
        f"# data throughput vs training consumption ({platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads in the trainer; 1-min load average before/after: "
        f"{load_before:.1f}/{load_after:.1f})"
    )
    kib = ", ".join(f"{e} HR {sizes['hr']:.0f} / LR {sizes['lr']:.0f} KiB" for e, sizes in per.items())
    print(
        f"# shards: HR {manifest['hr_crop']}², LR {manifest['lr_crop']}² ({kib} per sample); "
        f"loader patch {patch}, batch {loader_batch}; training patch "
        f"{cfg.data.hr_patch}, batch {batch}, config {args.config.name}; a sample = 1 HR + 1 real-LR crop decoded "
        f"and augmented, its LR made by hr_to_lr={cfg.data.hr_to_lr}"
    )
    print()
    print("| | samples/s | samples/s per worker | ratio to the hungriest step |")
    print("|---|---:|---:|---:|")
    comparable = patch == cfg.data.hr_patch  # the loader at the step's own patch; else no ratio
    for (e, w), r in rates.items():
        name = f"loader, {e} crops, {w} worker{'s' if w > 1 else ''}"
        print(f"| {name} | {r:.1f} | {r / w:.1f} | {f'{r / steps[hungriest]:.1f}×' if comparable else '—'} |")
    for stage, r in steps.items():
        mark = " (hungriest)" if stage is hungriest else ""
        print(f"| demo training step, {stage.value} stage: consumes{mark} | {r:.1f} | | |")
    print()
    print(f"| one HR sample's work in a worker (HR {patch}², single thread) | ms |\n|---|---:|")
    for name, ms in costs.items():
        print(f"| {name} | {ms:.2f} |")
    print()
    print(f"| a loader batch ({loader_batch} × HR {patch}²) to {args.device} | MB | ms pageable | ms pinned |")
    print("|---|---:|---:|---:|")
    for name, row in transfer.items():
        times = [f"{row[k]:.2f}" if k in row else "—" for k in ("pageable_ms", "pinned_ms")]
        print(f"| {name} | {row['mb']:.1f} | {' | '.join(times)} |")
    print()
    most = max(args.workers)
    ratios = {e: rates[e, most] / steps[hungriest] if comparable else None for e in shard_dirs}
    if not comparable:
        print(f"the loader was timed at patch {patch}, the step at {cfg.data.hr_patch}: no ratio to the 5x target")
    for e, ratio in ratios.items() if comparable else ():
        verdict = "meets" if ratio >= 5 else "MISSES"
        print(
            f"{most} workers on {e} crops feed {ratio:.1f}x what one training process eats ({hungriest.value} "
            f"stage): {verdict} the 5x target"
        )
    if args.json:
        result = {
            "loader_samples_per_s": {f"{e}/{w}": r for (e, w), r in rates.items()},
            "kib_per_sample": per,
            "step_samples_per_s": {stage.value: r for stage, r in steps.items()},
            "batch": batch,
            "hr_patch": cfg.data.hr_patch,
            "loader_patch": patch,
            "loader_batch": loader_batch,
            "transfer": transfer,
            "sample_ms": costs,
            "workers_for_ratio": most,
            "ratio": ratios,
            "load_average": [load_before, load_after],
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as err:  # a flag or a shard folder that cannot be used: its message, not a traceback
        sys.exit(f"data_throughput.py: error: {err}")
