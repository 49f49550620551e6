"""What CycleSR's joint stage does, per operator: the SR net at the end of SR pre-training (the last step before
any joint step) against the SR net at the end, and G's translation fidelity when the joint stage starts (G does
not train during pre-training) against G at the end. Needs the run's checkpoint at the end of pre-training, which
the benchmark keeps (a checkpoint every epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cyclesr_dist.checkpoint_format import complete_checkpoints, read_checkpoint
from cyclesr_dist.data.images import uint8_to_model
from cyclesr_dist.metrics import translation_metrics

from .data import redraw_test_lr
from .runs import score_sr, translation_fidelity

# The translation metrics a joint stage must not worsen, and whether higher is better; a change within TOLERANCE
# (dB, either metric) counts as holding: G's outputs are 8-bit images, and 0.01 dB is not a change a user sees.
FIDELITY = {"psnr": True, "spectral_distance": False}
TOLERANCE = 0.05
# the translation table's name for another draw of the true operator
REDRAWN = "the operator, another draw"


def checkpoint_at(run_dir: Path, step: int) -> Path | None:
    """The run's complete checkpoint of exactly `step`, None if it was not kept."""
    for step_dir in complete_checkpoints(run_dir / "checkpoints"):
        if read_checkpoint(step_dir).step == step:
            return step_dir
    return None


def joint_before_after(
    run_dir: Path,
    pairs: list,
    joint_start: int,
    after: tuple[dict[str, float], dict[str, Any]],
    device: str,
    tile: int,
    max_shift: int,
    subpixel: int,
) -> dict[str, Any] | None:
    """{"sr": {"before", "after"}: mean PSNR-RGB and best-shift PSNR; "translation": {"before", "after"}: G's
    mean translation metrics}. `after`: the final SR net's mean metrics and G's `translation_fidelity`, which the
    benchmark has already measured. None when the run kept no checkpoint at `joint_start` (pre-training's end)."""
    step_dir = checkpoint_at(run_dir, joint_start)
    if step_dir is None:
        return None
    res = score_sr(step_dir, pairs, device, tile, max_shift, subpixel)
    keys = [k for k in ("psnr_rgb", "psnr_rgb_best_shift") if k in res["mean"]]

    def g_of(fidelity: dict[str, Any]) -> dict[str, float]:
        return next(m for src, m in fidelity["mean"].items() if src.startswith("G("))

    return {
        "joint_start_step": joint_start,
        "sr": {"before": {k: res["mean"][k] for k in keys}, "after": {k: after[0][k] for k in keys}},
        "translation": {
            "before": g_of(translation_fidelity(run_dir, pairs, device, step_dir)),
            "after": g_of(after[1]),
        },
    }


def redraw_fidelity(operator: str, pairs: list) -> dict[str, float]:
    """The mean translation metrics of another draw of the operator itself against the test's true LR: the score of
    a G that were the true degradation (its per-image parameters and noise differ from the test draw's)."""
    per_scene = [
        translation_metrics(uint8_to_model(other).unsqueeze(0), uint8_to_model(lr).unsqueeze(0))
        for other, (_, lr, _) in zip(redraw_test_lr(operator, pairs), pairs, strict=True)
    ]
    return {k: float(np.mean([m[k] for m in per_scene])) for k in per_scene[0]}


def joint_verdict(stage: dict[str, Any], margin_db: float = 0.1) -> dict[str, bool]:
    """The issue's two conditions: the SR net gains ≥ margin (best-shift PSNR where measured) over the joint stage,
    and G's translation fidelity at the end is no worse than at its start (PSNR and spectral distance, each within
    TOLERANCE)."""
    key = "psnr_rgb_best_shift" if "psnr_rgb_best_shift" in stage["sr"]["after"] else "psnr_rgb"
    sr_gain = stage["sr"]["after"][key] - stage["sr"]["before"][key]
    before, after = stage["translation"]["before"], stage["translation"]["after"]
    g_holds = all(
        (after[m] >= before[m] - TOLERANCE) if up else (after[m] <= before[m] + TOLERANCE) for m, up in FIDELITY.items()
    )
    return {"sr_gains": sr_gain >= margin_db, "g_holds": g_holds}


def joint_table(per_operator: dict[str, dict[str, Any]]) -> str:
    """One row per operator: SR PSNR (best-shift) before → after the joint stage, G's PSNR and spectral distance
    to the true LR before → after, and whether each condition holds."""
    head = ["operator", "SR PSNR: pre-training end → end", "best-shift", "G PSNR to true LR", "G spectral dist."]
    head += ["the operator redrawn: PSNR / spectral", "SR gains ≥ 0.1", f"G holds (±{TOLERANCE})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op, stage in per_operator.items():
        sr, tr = stage["sr"], stage["translation"]
        verdict = joint_verdict(stage)
        cells = [op, f"{sr['before']['psnr_rgb']:.2f} → {sr['after']['psnr_rgb']:.2f}"]
        shifted = "psnr_rgb_best_shift" in sr["after"]
        cells.append(
            f"{sr['before']['psnr_rgb_best_shift']:.2f} → {sr['after']['psnr_rgb_best_shift']:.2f}" if shifted else "–"
        )
        cells.append(f"{tr['before']['psnr']:.2f} → {tr['after']['psnr']:.2f}")
        cells.append(f"{tr['before']['spectral_distance']:.2f} → {tr['after']['spectral_distance']:.2f}")
        redrawn = tr.get("operator_redrawn")
        cells.append(f"{redrawn['psnr']:.2f} / {redrawn['spectral_distance']:.2f}" if redrawn else "–")
        cells += ["yes" if verdict["sr_gains"] else "**no**", "yes" if verdict["g_holds"] else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
