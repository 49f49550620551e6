"""Paper numbers for data parallelism at the reference config: gradient all-reduce volumes and ring times against
the compute per step, from parameter and FLOP counts (nothing is run on a GPU or a network)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from cyclesr_dist.cyclesr import Stage, build_networks

from .flops import count_forward_flops, count_step_flops
from .setups import NETS, named_config


def scaling_section(args: argparse.Namespace, cpu_rows: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    """Paper numbers for data parallelism at the reference config, from counted parameters and FLOPs."""
    config = named_config("reference")
    lr = config.data.hr_patch // config.data.scale
    gbatch = config.data.batch_size
    with torch.device("meta"):
        nets = build_networks(config.model)
    counts = {n: sum(p.numel() for p in nets[n].parameters()) for n in NETS}
    fwd = count_forward_flops(config, lr)
    print(f"\n### Scaling at the reference config (LR {lr}×{lr}, global batch {gbatch})\n")
    print("| network | parameters | grad MB fp32 | grad MB bf16 | forward GFLOP/sample |")
    print("|---|---|---|---|---|")
    for n in NETS:
        print(f"| {n} | {counts[n]:,} | {counts[n] * 4 / 1e6:.1f} | {counts[n] * 2 / 1e6:.1f} | {fwd[n] / 1e9:.2f} |")

    # Gradients all-reduced per step: DDP reduces a network's gradients when its forward ran with grad enabled
    # through the DDP wrapper and its parameters got gradients in the backward.
    reduced = {
        "translation (ours)": ["disc_clean", "disc_real", "gen_clean_to_real", "gen_real_to_clean"],
        "sr_pretrain": ["sr"],
        "joint (ours)": ["disc_clean", "disc_real", "gen_clean_to_real", "gen_real_to_clean", "sr"],
        "joint (reference structure)": [
            "disc_clean",
            "disc_real",
            "gen_clean_to_real",
            "gen_real_to_clean",
            "sr",
            "sr",
        ],
    }
    per_sample = {
        "translation (ours)": count_step_flops(config, lr, 1, Stage.TRANSLATION, "ours"),
        "sr_pretrain": 3 * fwd["sr"],  # SR forward + backward (weights and activations) ≈ 3 forwards
        "joint (ours)": count_step_flops(config, lr, 1, Stage.JOINT, "ours"),
        "joint (reference structure)": count_step_flops(config, lr, 1, Stage.JOINT, "reference"),
    }
    bws = {"12.5 GB/s (100 Gb/s)": 12.5e9, "25 GB/s (= 200 Gb/s)": 25e9, "100 GB/s": 100e9}
    print(
        "\nAll-reduce per step (ring: each rank sends and receives 2(N−1)/N × the bytes; N = 8 shown; "
        "no overlap with the backward assumed, i.e. an upper bound on exposed time):\n"
    )
    head = "| stage | params reduced | MB fp32 | MB bf16 | " + " | ".join(f"ring ms fp32 @ {b}" for b in bws)
    print(head + " | TFLOP/step (global batch) |")
    print("|---|---|---|---|" + "---|" * len(bws) + "---|")
    out: dict[str, Any] = {"params": counts, "forward_flops_per_sample": fwd, "stages": {}}
    n_ranks = 8
    for stage, names in reduced.items():
        p = sum(counts[n] for n in names)
        ring = {b: 2 * (n_ranks - 1) / n_ranks * p * 4 / bw for b, bw in bws.items()}
        print(
            f"| {stage} | {p:,} | {p * 4 / 1e6:.1f} | {p * 2 / 1e6:.1f} | "
            + " | ".join(f"{t * 1e3:.1f}" for t in ring.values())
            + f" | {per_sample[stage] * gbatch / 1e12:.1f} |"
        )
        out["stages"][stage] = {"params": p, "ring_s_fp32": ring, "flops_per_sample": per_sample[stage]}

    peak = args.assume_tflops * 1e12 * args.assume_mfu
    print(
        f"\nCompute per step per rank at global batch {gbatch} on N data-parallel ranks, assuming "
        f"{args.assume_tflops:.0f} TFLOP/s peak × {args.assume_mfu:.0%} MFU = {peak / 1e12:.0f} TFLOP/s achieved, "
        "against the fp32 ring all-reduce at 25 GB/s (bf16 gradients halve it):\n"
    )
    print("| stage | N | batch/rank | compute ms | all-reduce ms fp32 | comm ÷ compute |")
    print("|---|---|---|---|---|---|")
    for stage in ("translation (ours)", "joint (ours)"):
        p = out["stages"][stage]["params"]
        for n in (1, 2, 8, 16, 32, 64):
            compute = per_sample[stage] * gbatch / n / peak
            comm = 2 * (n - 1) / n * p * 4 / 25e9 if n > 1 else 0.0
            print(f"| {stage} | {n} | {gbatch / n:g} | {compute * 1e3:.1f} | {comm * 1e3:.1f} | {comm / compute:.2f} |")
    # CPU: the measured GFLOP/s at the small reference shapes, extrapolated to the real patch and batch.
    rows = {r["variant"]: r for r in cpu_rows.get("reference", {}).get("joint", [])}
    if "ours" in rows:
        gflops = rows["ours"]["gflops"]
        t = per_sample["joint (ours)"] * gbatch / (gflops * 1e9)
        print(
            f"\nThis machine (ours, joint, reference networks) reached {gflops:.1f} GFLOP/s, i.e. ≈ {t:.0f} s per "
            f"reference-config step (LR {lr}², batch {gbatch}) on one process: an all-reduce of "
            f"{out['stages']['joint (ours)']['params'] * 4 / 1e6:.0f} MB is negligible next to it."
        )
    return out
