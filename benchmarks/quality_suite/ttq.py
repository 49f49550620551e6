"""Time-to-quality of a CycleSR run: after how many SR updates and how much training time its SR net first beats
a baseline's PSNR on the test set. Needs the run's intermediate checkpoints (quality.py --time-to-quality keeps one
per epoch)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from cyclesr_dist.checkpoint_format import complete_checkpoints, read_checkpoint
from cyclesr_dist.serve.evaluate import evaluate_pairs
from cyclesr_dist.serve.export import load_sr
from cyclesr_dist.testing import read_train_log


def train_seconds(run_dir: Path) -> dict[int, float]:
    """{logged step: training seconds up to it}, from the train log's timestamps. Gaps between invocations (a
    resume) and the start-up before the first logged step count at the run's median seconds per logged interval,
    so neither process start nor a pause is billed to the training."""
    rows = [r for r in read_train_log(run_dir) if "step" in r and "time" in r]
    if not rows:
        return {}
    deltas = [b["time"] - a["time"] for a, b in zip(rows, rows[1:], strict=False)]
    per_interval = statistics.median(deltas) if deltas else 0.0
    total = per_interval  # the first logged interval, without the process start
    out = {int(rows[0]["step"]): total}
    for a, b in zip(rows, rows[1:], strict=False):
        delta = b["time"] - a["time"]
        total += delta if 0 <= delta <= 3 * per_interval else per_interval
        out[int(b["step"])] = total
    return out


def sr_curve(
    run_dir: Path, pairs: list, sr_start_step: int, device: str, tile: int, max_shift: int, every: int = 0
) -> list[dict[str, Any]]:
    """Mean test PSNR of the SR net at every kept checkpoint past the first SR update (with `every`, only at SR
    updates that are a multiple of it, and the last), in step order."""
    seconds = train_seconds(run_dir)
    curve = []
    kept = complete_checkpoints(run_dir / "checkpoints")
    for step_dir in kept:
        step = read_checkpoint(step_dir).step
        if step <= sr_start_step:
            continue
        if every and (step - sr_start_step) % every and step_dir != kept[-1]:
            continue
        net = load_sr(step_dir, device=device)
        scale = pairs[0][2].shape[0] // pairs[0][1].shape[0]
        res = evaluate_pairs(net, pairs, scale=scale, device=device, tile=tile or None, max_shift=max_shift)
        curve.append(
            {
                "step": step,
                "sr_updates": step - sr_start_step,
                "train_s": seconds.get(step),
                "psnr_rgb": res["mean"]["psnr_rgb"],
                "bicubic_psnr_rgb": res["mean"]["bicubic_psnr_rgb"],
            }
        )
    return curve


def first_passing(curve: list[dict[str, Any]], baselines: dict[str, float]) -> dict[str, dict[str, Any] | None]:
    """{baseline: the first curve point strictly above its PSNR, or None if no kept checkpoint passes it}."""
    return {name: next((p for p in curve if p["psnr_rgb"] > psnr), None) for name, psnr in baselines.items()}


def ttq_table(per_operator: dict[str, dict[str, Any]]) -> str:
    """One row per operator: for each baseline, the SR updates and training time at which CycleSR passes it."""
    names = sorted({b for r in per_operator.values() for b in r["first"]})
    head = "| operator | checkpoints | " + " | ".join(f"passes {b}: SR updates (train s)" for b in names) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(names)]
    for op, r in per_operator.items():
        cells = []
        for b in names:
            p = r["first"].get(b)
            wall = f"{p['train_s']:.0f}" if p and p["train_s"] is not None else "?"
            cells.append(f"{p['sr_updates']} ({wall})" if p else f"never ({r['baselines'][b]:.2f} dB)")
        lines.append(f"| {op} | {len(r['curve'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
