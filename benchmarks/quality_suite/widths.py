"""The production networks beside the small recipe at the same budget: `quality.py --production` reads the small
recipe's results from the same --work (written by the same command without --production) and prints both, row by
row and along the SR net's time-to-quality curve, when the two runs had the same crops, batch, schedule and
precision; otherwise it says what differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# what must match for "the same budget"
BUDGET = ("hr_patch", "batch_size", "steps_per_epoch", "translation_epochs", "pretrain_epochs", "joint_epochs",
          "decay_epochs", "seed", "test_crop", "overrides")  # fmt: skip
ROWS = ("bicubic", "cyclesr", "oracle")


# --set overrides that are a recipe's own (its networks, losses, learning rates), not the budget
RECIPE_KEYS = ("model.", "loss.", "optim.")


def budget_mismatch(small: dict[str, Any], production: dict[str, Any]) -> list[str]:
    """The budget settings (quality.py's arguments) on which the two runs differ, as 'name: small vs production'
    (the learning rates are each recipe's own: the benchmark's for the small one, the config's under --production,
    and so are --set overrides of the model, losses and optimiser)."""

    def budget(args: dict[str, Any]) -> dict[str, Any]:
        overrides = [o for o in args.get("overrides", []) if not o.startswith(RECIPE_KEYS)]
        return {**{k: args.get(k) for k in BUDGET}, "overrides": overrides}

    a, b = budget(small["args"]), budget(production["args"])
    return [f"{k}: {a[k]} vs {b[k]}" for k in BUDGET if a[k] != b[k]]


def _cell(rows: dict[str, Any], row: str) -> str:
    if row not in rows:
        return "–"
    m = rows[row]["mean"]
    return f"{m['psnr_rgb']:.2f} ({m['psnr_rgb_best_shift']:.2f})"


def _wall(op: dict[str, Any], row: str) -> str:
    wall = op.get("wall_s", {}).get(row)
    return f"{wall / 60:.0f} min" if wall else "–"


def side_by_side_table(small: dict[str, Any], production: dict[str, Any]) -> str:
    """Per operator and row: PSNR (best-shift) and training wall time of the small recipe and the production
    networks, and the difference of their best-shift PSNR."""
    lines = [
        "| operator | row | small recipe | wall | production networks | wall | Δ best-shift |",
        "|---|---|---|---|---|---|---:|",
    ]
    for op, prod in production["operators"].items():
        sm = small["operators"].get(op)
        if sm is None:
            continue
        for row in ROWS:
            if row == "bicubic":
                cell = _cell(prod["rows"], row)
                lines.append(f"| {op} | bicubic | {cell} | | {cell} | | |")
                continue
            key = "psnr_rgb_best_shift"
            both = row in sm["rows"] and row in prod["rows"]
            delta = f"{prod['rows'][row]['mean'][key] - sm['rows'][row]['mean'][key]:+.2f}" if both else "–"
            lines.append(
                f"| {op} | {row} | {_cell(sm['rows'], row)} | {_wall(sm, row)} | {_cell(prod['rows'], row)} | "
                f"{_wall(prod, row)} | {delta} |"
            )
    return "\n".join(lines)


def curves_table(small: dict[str, Any], production: dict[str, Any]) -> str:
    """CycleSR's SR net along its training, per operator: test PSNR and training seconds at the same SR-update
    counts for both network sizes (the points both curves have)."""
    lines = [
        "| operator | SR updates | small: PSNR | small: train s | production: PSNR | production: train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op, prod in production["operators"].items():
        sm = small["operators"].get(op, {})
        a = {p["sr_updates"]: p for p in sm.get("time_to_quality", {}).get("curve", [])}
        b = {p["sr_updates"]: p for p in prod.get("time_to_quality", {}).get("curve", [])}
        for n in sorted(set(a) & set(b)):
            pa, pb = a[n], b[n]
            sa = f"{pa['train_s']:.0f}" if pa.get("train_s") is not None else "?"
            sb = f"{pb['train_s']:.0f}" if pb.get("train_s") is not None else "?"
            lines.append(f"| {op} | {n} | {pa['psnr_rgb']:.2f} | {sa} | {pb['psnr_rgb']:.2f} | {sb} |")
    return "\n".join(lines)


def side_by_side(small_file: Path, production: dict[str, Any]) -> str:
    """Both tables, or one line saying why not."""
    if not small_file.is_file():
        return f"(no small-recipe results at {small_file}: run the same command without --production to compare)"
    small = json.loads(small_file.read_text())
    differs = budget_mismatch(small, production)
    if differs:
        return f"(the small recipe's results in {small_file} had another budget: {'; '.join(differs)})"
    return (
        f"{side_by_side_table(small, production)}\n\nCycleSR's SR net along its training (test PSNR, plain):\n\n"
        f"{curves_table(small, production)}"
    )
