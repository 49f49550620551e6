"""The printed tables of the timed variants: one per (config, stage), and the targets."""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

from .setups import Setup
from .timing import paired_diff_ms, paired_ratio
from .variants import VARIANTS, variant_label


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.0f}" if s >= 0.1 else f"{s * 1e3:.1f}"


def print_stage_table(
    setup: Setup, stage: str, res: dict[str, Any], flops: dict[str, int], args: argparse.Namespace
) -> list[dict]:
    keys = list(res["per_rep"])
    wall, cpu = res["per_rep"], res["cpu_rep"]
    lb, la = res["load"]
    print(
        f"\n#### {setup.name}: {stage} stage (load avg 1-min {lb:.2f} → {la:.2f}; {len(wall[keys[0]])} repetitions "
        f"× {res['steps']} steps)\n"
    )
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    nan3 = (float("nan"),) * 3
    print(
        "| variant | step ms (median) | min–max ms | samples/s | wall ÷ bare | CPU-time ÷ bare | CPU ms − bare "
        "| wall ÷ ours " + ("| GFLOP/s | MFU |" if peak else "| GFLOP/s |")
    )
    print("|" + "---|" * (10 if peak else 9))
    rows = []
    useful = flops["ours"]  # the optimised step's FLOPs: useful work, the same numerator for every variant
    for key in keys:
        t = wall[key]
        med = statistics.median(t)
        row = {
            "variant": key,
            "label": variant_label(VARIANTS[key], setup.base_bf16),
            "median_s": med,
            "min_s": min(t),
            "max_s": max(t),
            "cpu_median_s": statistics.median(cpu[key]),
            "samples_per_s": setup.batch_size / med,
            "wall_over_bare": paired_ratio(t, wall["bare"]) if "bare" in wall else nan3,
            "cpu_over_bare": paired_ratio(cpu[key], cpu["bare"]) if "bare" in cpu else nan3,
            "cpu_minus_bare_ms": paired_diff_ms(cpu[key], cpu["bare"]) if "bare" in cpu else nan3,
            "wall_over_ours": paired_ratio(t, wall["ours"]) if "ours" in wall else nan3,
            "cpu_over_ours": paired_ratio(cpu[key], cpu["ours"]) if "ours" in cpu else nan3,
            "gflops": useful / med / 1e9,
            "same_maths": res["same_maths"][key],
            "wall_reps": t,
        }
        rows.append(row)
        # a column against a variant this run did not time reads "—", not "nan (nan–nan)"
        r3 = lambda r: "—" if math.isnan(r[0]) else f"{r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f})"  # noqa: E731
        d3 = lambda r: "—" if math.isnan(r[0]) else f"{r[0]:+.1f} ({r[1]:+.1f}…{r[2]:+.1f})"  # noqa: E731
        line = (
            f"| {variant_label(VARIANTS[key], setup.base_bf16)} | {fmt_ms(med)} | {fmt_ms(min(t))}–{fmt_ms(max(t))} "
            f"| {row['samples_per_s']:.2f} | {r3(row['wall_over_bare'])} | {r3(row['cpu_over_bare'])} "
            f"| {d3(row['cpu_minus_bare_ms'])} "
            f"| {r3(row['wall_over_ours'])} | {row['gflops']:.1f} |"
        )
        if peak:
            line += f" {useful / med / peak:.1%} |"
        print(line)
    print(
        "\nRatios: median over repetitions of the per-repetition ratio (min–max in brackets); CPU time = process "
        "time of all threads, less sensitive to other jobs than wall time."
    )
    diffs = ", ".join(
        f"{k} {res['same_maths'][k][0]:.1e} / {res['same_maths'][k][1]:.1e}" for k in keys if k != keys[0]
    )
    print(
        f"Same maths, weights after one step from the same start vs {keys[0]} (max |Δw| / ‖Δw‖ ÷ ‖update‖): {diffs}. "
        "A max |Δw| of ≈ 2×lr comes from conv biases feeding an InstanceNorm: their true gradient is 0, and Adam's "
        "first step turns rounding noise of either sign into ±lr."
    )
    for key in (k for k in res["first_steps"] if VARIANTS[k].compile):
        fs = res["first_steps"][key]
        steady = statistics.median(wall[key])
        print(
            f"{variant_label(VARIANTS[key], setup.base_bf16)}: warm-up step times {', '.join(f'{x:.2f}' for x in fs)}"
            f" s; compile time ≈ {sum(fs) - len(fs) * steady:.1f} s (warm-up total minus steady-state steps)"
        )
    return rows


def print_targets(all_rows: dict[str, dict[str, list[dict]]]) -> list[str]:
    needed = {"ours", "bare", "reference"}
    if not any(needed <= {r["variant"] for r in stages.get("joint", [])} for stages in all_rows.values()):
        return []
    print("\n### Targets (joint stage)\n")
    print("| config | ours ÷ bare, wall (≤ 1.05) | ours ÷ bare, CPU time | reference ÷ ours, wall (≥ 1.3) "
          "| reference ÷ ours, CPU time |")  # fmt: skip
    print("|---|---|---|---|---|")
    verdicts: list[str] = []
    fast: list[str] = []
    for name, stages in all_rows.items():
        rows = {r["variant"]: r for r in stages.get("joint", [])}
        if not {"ours", "bare", "reference"} <= set(rows):
            continue
        ob, obc = rows["ours"]["wall_over_bare"], rows["ours"]["cpu_over_bare"]
        ro = rows["reference"]["wall_over_ours"]
        roc = rows["reference"]["cpu_over_ours"]
        ok1 = "met" if ob[0] <= 1.05 else "NOT met"
        ok2 = "met" if ro[0] >= 1.3 else "NOT met"
        print(
            f"| {name} | {ob[0]:.3f} ({ob[1]:.2f}–{ob[2]:.2f}): {ok1} | {obc[0]:.3f} ({obc[1]:.2f}–{obc[2]:.2f}) "
            f"| {ro[0]:.2f} ({ro[1]:.2f}–{ro[2]:.2f}): {ok2} | {roc[0]:.2f} ({roc[1]:.2f}–{roc[2]:.2f}) |"
        )
        verdicts.append(f"{name}: overhead {ok1} ({ob[0]:.3f}), speed-up {ok2} ({ro[0]:.2f})")
        for key in rows:
            if key not in ("bare", "ours", "reference", "trainer"):  # reference ÷ (ours + switch), paired
                r = paired_ratio(rows["reference"]["wall_reps"], rows[key]["wall_reps"])
                fast.append(f"| {name} | {rows[key]['label']} | {r[0]:.2f} ({r[1]:.2f}–{r[2]:.2f}) |")
    if fast:
        print("\n| config | our step with | reference ÷ this, wall (≥ 1.3) |\n|---|---|---|")
        print("\n".join(fast))
    return verdicts
