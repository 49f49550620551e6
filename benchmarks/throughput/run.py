"""The timed part: per config and stage, FLOPs of both update structures, the interleaved variants, a table."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

from cyclesr_dist.cyclesr import Stage

from .checkpoint_cost import checkpoint_section
from .flops import count_step_flops
from .report import print_stage_table
from .roofline import print_roofline, roofline
from .setups import STAGES, Setup, config_source, make_setup
from .timing import time_stage
from .variants import TINY_VARIANTS


def variants_for(name: str, args: argparse.Namespace, device: torch.device) -> list[str]:
    """--variants less what does not apply to this config: bf16 on a CPU at the reference config (minutes a step)
    unless asked for, and for `tiny` (overhead only) anything beyond TINY_VARIANTS."""
    skip_amp = name == "reference" and device.type == "cpu" and not args.cpu_bf16_reference
    return [k for k in args.variants if not (k == "amp" and skip_amp) and (name != "tiny" or k in TINY_VARIANTS)]


def roofline_at(setup: Setup, stage: Stage, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """The roofline at the shapes timed on a GPU; on a CPU (whose timed shapes are shrunk) at the config's own LR
    crop and batch, which the meta device counts for free."""
    c = setup.config
    if args.roofline_calls != "config":
        c = dataclasses.replace(c, train=dataclasses.replace(c.train, batched_calls=args.roofline_calls == "batched"))
    own = setup.name != "tiny" and device.type == "cpu"
    lr, batch = (c.data.hr_patch // c.data.scale, c.data.batch_size) if own else (setup.lr_size, setup.batch_size)
    peak = args.peak_tflops or args.assume_tflops
    return roofline(c, lr, batch, stage, peak, args.hbm_tbps, args.roofline_bytes)


def time_configs(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], dict[str, dict]]:
    """Returns the JSON's "configs" section and the table rows per config and stage."""
    configs: dict[str, Any] = {}
    all_rows: dict[str, dict[str, list[dict]]] = {}
    for name in args.configs:
        setup = make_setup(name, args, device)
        s = setup.config.data.scale
        params = sum(t.numel() for st in setup.init_state.values() for t in st.values())
        print(
            f"\n### {name} config ({config_source(name)}): LR {setup.lr_size}×{setup.lr_size} "
            f"(HR {setup.lr_size * s}×{setup.lr_size * s}), batch {setup.batch_size}, {params:,} parameters",
            flush=True,
        )
        all_rows[name] = {}
        configs[name] = {"lr": setup.lr_size, "batch": setup.batch_size, "stages": {}}
        for stage in args.stages:
            st = STAGES[stage]
            if args.roofline_only:
                bound = roofline_at(setup, st, device, args)
                print_roofline(name, stage, bound)
                configs[name]["stages"][stage] = {"roofline": bound}
                continue
            flops = {
                structure: count_step_flops(setup.config, setup.lr_size, setup.batch_size, st, structure)
                for structure in ("ours", "reference")
            }
            res = time_stage(setup, st, variants_for(name, args, device), args)
            rows = print_stage_table(setup, stage, res, flops, args)
            print(
                f"FLOPs per step (conv/matmul, fwd+bwd): ours {flops['ours'] / 1e9:.2f} G, reference structure "
                f"{flops['reference'] / 1e9:.2f} G (× {flops['reference'] / flops['ours']:.3f})",
                flush=True,
            )
            all_rows[name][stage] = rows
            configs[name]["stages"][stage] = {"rows": rows, "flops": flops, "load": res["load"]}
            if args.roofline:
                bound = roofline_at(setup, st, device, args)
                # measured: the timed variant that makes the calls the roofline counted
                same_calls = "batched" if bound["calls"] == "batched" else "ours"
                ours = next((r["median_s"] for r in rows if r["variant"] == same_calls), None)
                # A CPU time is no measure of a GPU's distance to its bound; print the bound alone there.
                print_roofline(name, stage, bound, ours if device.type == "cuda" else None)
                configs[name]["stages"][stage]["roofline"] = bound
        if args.checkpoint and not args.roofline_only and name != "tiny":
            configs[name]["checkpoint"] = checkpoint_section(setup, all_rows[name], args)
    return configs, all_rows
