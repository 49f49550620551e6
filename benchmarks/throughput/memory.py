"""Peak memory of one variant's steps, each measured in a fresh child process (the entry script again)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .setups import ENTRY, STAGES, make_setup
from .variants import VARIANTS, build_variant, variant_label


def proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0), so it measures only what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def child_memory(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """Runs in a fresh process: build one variant, step it, report peak memory above the pre-step level."""
    device = torch.device(spec["device"])
    setup = make_setup(spec["config"], args, device)
    built = build_variant(VARIANTS[spec["variant"]], setup, STAGES[spec["stage"]])
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = proc_status_bytes("VmRSS")
    for _ in range(spec["steps"]):
        built.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = proc_status_bytes("VmHWM")
    built.cleanup()
    return {"peak_delta_mib": (peak - base) / 2**20, "base_mib": base / 2**20}


def measure_memory(config: str, stage: str, variant: str, args: argparse.Namespace, device: torch.device) -> float:
    spec = {"config": config, "stage": stage, "variant": variant, "device": str(device), "steps": args.memory_steps}
    cmd = [sys.executable, str(ENTRY), "--child-memory", json.dumps(spec), "--precision", args.precision]
    for flag in ("demo_lr", "demo_batch", "ref_lr", "ref_batch"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        print(f"  memory child failed for {config}/{stage}/{variant}: {out.stderr.strip()[-400:]}", file=sys.stderr)
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta_mib"]


def memory_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The peak-memory table: every (config, stage) of --memory-configs × --stages, one column per variant."""
    if device.type == "cuda":  # this process's cached blocks would leave the children too little memory
        gc.collect()
        torch.cuda.empty_cache()
    unit = "peak RSS above the pre-step RSS" if device.type == "cpu" else "max_memory_allocated above pre-step"
    print(f"\n### Peak memory, MiB ({unit}; one fresh process each, {args.memory_steps} steps)\n")
    keys = list(args.memory_variants)
    print("| config | stage | " + " | ".join(variant_label(VARIANTS[k], args.precision == "bf16") for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    mem: dict[str, Any] = {}
    for name in args.memory_configs:
        for stage in args.stages:
            vals = {k: measure_memory(name, stage, k, args, device) for k in keys}
            mem[f"{name}/{stage}"] = vals
            print(f"| {name} | {stage} | " + " | ".join(f"{vals[k]:.0f}" for k in keys) + " |", flush=True)
    return mem
