"""Interleaved timed repetitions of the variants, the same-maths check, and paired ratios."""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time
from typing import Any

import torch

from cyclesr_dist.cyclesr import Stage

from .setups import NETS, Built, Setup, sync
from .variants import VARIANTS, build_variant


def weight_diff(a: torch.nn.ModuleDict, b: torch.nn.ModuleDict, init: dict[str, dict]) -> tuple[float, float]:
    """max |w_a − w_b| and ‖w_a − w_b‖ / ‖w_a − w_init‖ (the difference relative to the update itself)."""
    max_diff, diff_sq, update_sq = 0.0, 0.0, 0.0
    for n in NETS:
        for (name, p), q in zip(a[n].named_parameters(), b[n].parameters(), strict=True):
            pa, pb = p.detach().float().cpu(), q.detach().float().cpu()
            d = pa - pb
            max_diff = max(max_diff, d.abs().max().item())
            diff_sq += d.double().square().sum().item()
            update_sq += (pa - init[n][name].float()).double().square().sum().item()
    return max_diff, (diff_sq / update_sq) ** 0.5 if update_sq else 0.0


def time_stage(setup: Setup, stage: Stage, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Build every variant, check they compute the same first update, then interleaved timed repetitions."""
    device = setup.device
    built: dict[str, Built] = {}
    first_steps: dict[str, list[float]] = {}
    same_maths: dict[str, tuple[float, float]] = {}
    reference_weights: torch.nn.ModuleDict | None = None
    for key in keys:
        built[key] = build_variant(VARIANTS[key], setup, stage)
        times = []
        warmup = 1 if steps_for(key, 5, device, args) == 1 else max(1, args.warmup)  # bf16 on CPU: one is plenty
        for i in range(warmup + (args.compile_warmup if VARIANTS[key].compile else 0)):
            sync(device)
            t0 = time.perf_counter()
            built[key].step()
            sync(device)
            times.append(time.perf_counter() - t0)
            if i == 0:  # same maths: weights after one step from the same start, against the first variant's
                if reference_weights is None:
                    reference_weights = copy.deepcopy(built[key].nets)
                same_maths[key] = weight_diff(reference_weights, built[key].nets, setup.init_state)
        first_steps[key] = times
    del reference_weights
    if args.steps:
        steps = args.steps
    else:  # enough steps for about --rep-seconds per variant and repetition
        typical = statistics.median(first_steps[k][-1] for k in keys if k != "amp" and not VARIANTS[k].compile)
        steps = max(1, min(50, round(args.rep_seconds / typical)))

    per_rep: dict[str, list[float]] = {k: [] for k in keys}
    cpu_rep: dict[str, list[float]] = {k: [] for k in keys}
    load_before = os.getloadavg()[0]
    for rep in range(args.reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            n = steps_for(key, steps, device, args)
            gc.collect()
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                built[key].step()
            sync(device)
            per_rep[key].append((time.perf_counter() - t0) / n)
            cpu_rep[key].append((time.process_time() - c0) / n)
    load_after = os.getloadavg()[0]
    for b in built.values():
        b.cleanup()
    del built
    gc.collect()
    return {
        "per_rep": per_rep,
        "cpu_rep": cpu_rep,
        "first_steps": first_steps,
        "same_maths": same_maths,
        "load": (load_before, load_after),
        "steps": steps,
    }


def steps_for(key: str, steps: int, device: torch.device, args: argparse.Namespace) -> int:
    """bf16 autocast on a CPU without bf16 units is many times slower: a fifth of the steps (at least one)."""
    return max(1, steps // 5) if key == "amp" and device.type == "cpu" and args.precision == "fp32" else steps


def paired_diff_ms(a: list[float], b: list[float]) -> tuple[float, float, float]:
    d = [(x - y) * 1e3 for x, y in zip(a, b, strict=True)]
    return statistics.median(d), min(d), max(d)


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    r = [a / b for a, b in zip(num, den, strict=True)]
    return statistics.median(r), min(r), max(r)
