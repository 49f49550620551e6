"""quality.py --production prints the production networks beside the small recipe's results of the same --work,
only when both ran on the same budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_suite.widths import side_by_side  # noqa: E402


def _summary(cyclesr: float, oracle: float, steps_per_epoch: int = 100, overrides: tuple[str, ...] = ()) -> dict:
    def row(p: float) -> dict:
        return {"mean": {"psnr_rgb": p, "psnr_rgb_best_shift": p + 0.5}}

    curve = [{"sr_updates": n, "train_s": 10.0 * n, "psnr_rgb": cyclesr - 1 + n / 1000} for n in (500, 1000)]
    return {
        "args": {"hr_patch": 128, "batch_size": 8, "steps_per_epoch": steps_per_epoch, "translation_epochs": 3,
                 "pretrain_epochs": 5, "joint_epochs": 25, "decay_epochs": 10, "seed": 0, "test_crop": 1024,
                 "overrides": list(overrides)},
        "operators": {"blur": {"rows": {"bicubic": row(29.0), "cyclesr": row(cyclesr), "oracle": row(oracle)},
                               "wall_s": {"cyclesr": 600.0, "oracle": 120.0},
                               "time_to_quality": {"curve": curve}}},
    }  # fmt: skip


def test_same_budget_prints_rows_deltas_and_curves(tmp_path: Path) -> None:
    small = tmp_path / "results.json"
    small.write_text(json.dumps(_summary(30.0, 31.0)))
    text = side_by_side(small, _summary(30.25, 30.5))
    assert "| blur | cyclesr | 30.00 (30.50) | 10 min | 30.25 (30.75) | 10 min | +0.25 |" in text
    assert "| blur | oracle | 31.00 (31.50) | 2 min | 30.50 (31.00) | 2 min | -0.50 |" in text
    assert "| blur | 1000 | 30.00 | 10000 | 30.25 | 10000 |" in text


def test_another_budget_or_no_small_results_is_one_line(tmp_path: Path) -> None:
    small = tmp_path / "results.json"
    assert side_by_side(small, _summary(30.0, 31.0)).startswith("(no small-recipe results")
    small.write_text(json.dumps(_summary(30.0, 31.0, steps_per_epoch=50)))
    text = side_by_side(small, _summary(30.0, 31.0))
    assert "steps_per_epoch: 50 vs 100" in text and "\n" not in text


def test_recipe_overrides_are_not_the_budget(tmp_path: Path) -> None:
    small = tmp_path / "results.json"
    small.write_text(json.dumps(_summary(30.0, 31.0, overrides=("train.mixed_precision=bf16",))))
    recipe = ("train.mixed_precision=bf16", "optim.sr_lr=1e-3", "model.generator.args.real_noise=false")
    assert "| blur | cyclesr |" in side_by_side(small, _summary(30.1, 31.0, overrides=recipe))
    precision = side_by_side(small, _summary(30.1, 31.0, overrides=("optim.sr_lr=1e-3",)))
    assert (
        precision.startswith("(the small recipe's") and "overrides: ['train.mixed_precision=bf16'] vs []" in precision
    )
