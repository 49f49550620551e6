"""Smoke test of the quality benchmark (benchmarks/quality.py --quick) end to end for one operator: photo
download, per-operator data, the six rows trained through the CLI and scored, translation fidelity, targets and
results.json. Numbers are meaningless at this budget; only that it all runs and reports is checked.

Skipped, with the reason, when the photo package cannot be downloaded (no network or no apt); any other
failure fails the test. The .deb is cached in data/photo-cache/ (git-ignored), so later runs need no network."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_suite import data as quality_data  # noqa: E402

from cyclesr_dist.data.degrade import get_degradation  # noqa: E402

CACHE = REPO / "data" / "photo-cache"


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    packages = sorted({quality_data.SCENES[s][0] for names in quality_data.splits_for(True).values() for s in names})
    try:
        quality_data.fetch_photos(CACHE, packages)
    except quality_data.PhotoFetchError as err:
        pytest.skip(f"photo package not downloadable here: {err}")
    cmd = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--work", str(tmp_path), "--cache", str(CACHE)]
    cmd += ["--quick", "--operators", "blur", "--jobs", "2", "--time-to-quality"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    out = proc.stdout
    assert "### blur" in out and "Translation fidelity" in out and "CycleSR ≥ blind" in out
    results = json.loads((tmp_path / "results.json").read_text())
    blur = results["operators"]["blur"]
    assert list(blur["rows"]) == ["bicubic", "bicubic-trained", "blind", "realsr", "cyclesr", "oracle"]
    for row in blur["rows"].values():
        assert [im["name"] for im in row["images"]] == quality_data.splits_for(True)["test"]
        assert 15 < row["mean"]["psnr_rgb"] < 60 and 0 < row["mean"]["ssim_rgb"] <= 1
    assert all(blur["wall_s"][r] > 0 for r in ("bicubic-trained", "blind", "realsr", "cyclesr", "oracle"))
    # the clean LR G was given, and the true operator drawn again (what G would score were it the degradation)
    assert set(blur["translation"]["mean"]) == {"G(sampled LR)", "sampled LR", "the operator, another draw"}
    assert [t["met"] in (True, False) for t in blur["targets"]] == [True] * 4  # the RealSR-style peer's too
    assert [t["met"] in (True, False) for t in blur["targets_best_shift"]] == [True] * 4
    assert "By best-shift PSNR" in out and len(results["targets_mean_best_shift"]) == 4
    # time to quality: CycleSR's SR net scored at every epoch's checkpoint after its first SR update (quick: 5-step
    # epochs, 1 translation epoch), and where it passes each baseline is one of those points or none
    ttq = blur["time_to_quality"]
    assert [(p["step"], p["sr_updates"]) for p in ttq["curve"]] == [(10, 5), (15, 10)]
    assert all(p["train_s"] > 0 and 15 < p["psnr_rgb"] < 60 for p in ttq["curve"])
    assert set(ttq["first"]) == {"bicubic", "blind"} and all(v in [None, *ttq["curve"]] for v in ttq["first"].values())
    assert "### time to quality" in out
    assert len(results["targets_mean"]) == 4 and "cyclesr" in results["mean_over_operators"]
    # the joint stage: the SR net and G at the end of SR pre-training (step 10: one translation and one pre-training
    # epoch of 5 steps), against the end
    joint = blur["joint_stage"]
    assert joint["joint_start_step"] == 10 and set(joint["sr"]) == {"before", "after"}
    assert set(joint["translation"]) == {"before", "after", "operator_redrawn"}
    assert joint["translation"]["operator_redrawn"] == blur["translation"]["mean"]["the operator, another draw"]
    assert joint["sr"]["after"]["psnr_rgb"] == blur["rows"]["cyclesr"]["mean"]["psnr_rgb"]
    assert joint["sr"]["before"]["psnr_rgb"] != joint["sr"]["after"]["psnr_rgb"]  # five SR updates apart
    assert "The joint stage (CycleSR)" in out

    # again with the defaults as the only candidate: nothing is trained or scored again (the scores are cached),
    # and each operator's held-out score is the defaults' own
    proc = subprocess.run([*cmd, "--candidates", "default"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "training (" not in proc.stdout and "### held out" in proc.stdout
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["operators"]["blur"]["rows"] == blur["rows"]
    held = again["heldout"]["operators"]["blur"]
    assert held["chosen"] == "default" and held["psnr_rgb"] == blur["rows"]["cyclesr"]["mean"]["psnr_rgb"]

    # each training row used the LR it is defined by
    configs = {p.stem: p.read_text() for p in (tmp_path / "configs").glob("*.yaml")}
    assert "hr_to_lr: realesrgan" in configs["blind"] and "hr_to_lr: blur" in configs["blur_oracle"]
    assert "hr_to_lr: sampled" in configs["blur_cyclesr"] and "hr_to_lr: bicubic" in configs["bicubic-trained"]
    fitted = tmp_path / "data" / "blur" / "fitted-20.npz"  # the RealSR-style row's degradation, fitted unpaired
    assert f"hr_to_lr: fitted:{fitted.resolve()}" in configs["blur_realsr"] and fitted.is_file()

    # what G measured at start-up beside the operator's paired truth (benchmarks/quality_fits.py)
    fits = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality_fits.py"), "--data", str(tmp_path / "data"), "--operators",
         "blur"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert fits.returncode == 0, fits.stdout[-2000:] + fits.stderr[-2000:]
    g_row = re.search(r"^\| blur \| [\d.]+ / [\d.]+ \| ([\d.]+) \(([\d.]+)\) \| [\d.]+ \| ([\d.]+) \| (\d+)–(\d+) \|$",
                      fits.stdout, re.M)  # fmt: skip
    assert g_row, fits.stdout
    blur_lr, blur_hr, _, low, high = (float(v) for v in g_row.groups())
    assert blur_lr > 0 and blur_hr == pytest.approx(math.hypot(1, 4 * blur_lr), abs=0.01)  # blur's edges are wider
    assert 80 <= low <= high <= 97  # blur's JPEG at 85-95

    # the manifest says where every scene came from, and the data folders exist
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    for name, scene in manifest["scenes"].items():
        assert (CACHE / "x" / scene["package"] / scene["file"]).is_file(), name
        assert scene["deb"].startswith(scene["package"] + "_")
    for sub in ("hr", "real_lr", "test/hr", "test/lr"):
        assert any((tmp_path / "data" / "blur" / sub).iterdir()), sub

    # the discriminator probe reads the run's D_Y and G and scores every LR set it names
    probe = [sys.executable, str(REPO / "benchmarks" / "quality_diagnostics.py"), "--data", str(tmp_path / "data")]
    probe += ["--operator", "blur", "disc", str(tmp_path / "blur" / "cyclesr")]
    proc = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sets = ["real LR", "clean LR", "G(clean LR)", "degraded", "degraded, JPEG q100", "G without its noise"]
    # G's JPEG stage is on when the trainer's measurement on this tiny real-LR set found JPEG (blur's q 85-95: near
    # the estimate's upper limit); the run's resolved config says which
    resolved = yaml.safe_load((tmp_path / "blur" / "cyclesr" / "config.yaml").read_text())["model"]["generator"]
    has_jpeg = bool(resolved["args"].get("jpeg_quality"))
    sets += ["G without its JPEG"] if has_jpeg else []
    scores = dict(re.findall(r"(" + "|".join(map(re.escape, sets)) + r") (-?\d+\.\d+)", proc.stdout))
    assert set(scores) == set(sets), proc.stdout
    # both `auto`s were passed to the trainer and resolved there to what it measured: a number or range, not auto
    assert "jpeg_quality: auto" in configs["blur_cyclesr"] and "input_blur: auto" in configs["blur_cyclesr"]
    assert isinstance(resolved["args"]["input_blur"], float) and resolved["args"].get("jpeg_quality", 0) != "auto"
    # the edge-width diagnostic: four positive median widths and the two solved blurs
    edges = [sys.executable, str(REPO / "benchmarks" / "quality_diagnostics.py"), "--data", str(tmp_path / "data")]
    proc = subprocess.run([*edges, "--operator", "blur", "edges"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    widths = re.findall(r"(?:LR|domain) (\d+\.\d+)", proc.stdout.split(";")[0])
    blurs = re.search(r"unpaired \(input_blur: auto\) (\d+\.\d+), same scenes (\d+\.\d+)", proc.stdout)
    assert len(widths) == 4 and all(float(w) > 0 for w in widths) and blurs, proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--operators", "blurry"], "unknown or no operator(s) ['blurry']; valid: blur"),
        (["--models", "cyclesr,oracel"], "unknown or no model(s) ['oracel']"),
        (["--shift-steps", "0"], "--shift-steps must be >= 1 (steps per HR px) and --max-shift >= 0, got 0 and 4"),
        (["--clean-lr", "area"], "unknown --clean-lr 'area'; valid: bicubic, sampled"),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--work", str(tmp_path / "work"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "work").exists()  # nothing fetched, built or trained


def _scores(table: dict[str, list[float]], operators: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{tag: per-operator best-shift PSNRs} as `heldout` reads them from results files (plain = shifted − 1)."""
    return {
        tag: {op: {"psnr_rgb": v - 1, "psnr_rgb_best_shift": v} for op, v in zip(operators, values, strict=True)}
        for tag, values in table.items()
    }


def test_leave_one_out_scores_each_operator_by_what_the_others_chose() -> None:
    """`tuned` wins on a and b but loses badly on c; `steady` is good everywhere. Held out, a and b are scored by
    whatever the other two prefer, and c by `tuned`, which a and b prefer: its loss on c is the held-out score."""
    from quality_suite import heldout as quality_heldout

    ops = ["a", "b", "c"]
    scores = _scores({"default": [30.0, 30.0, 30.0], "tuned": [31.0, 31.0, 28.0], "steady": [30.5, 30.6, 30.5]}, ops)
    held = quality_heldout.leave_one_out(scores, ops)
    assert {op: h["chosen"] for op, h in held.items()} == {"a": "steady", "b": "steady", "c": "tuned"}
    assert [held[op]["psnr_rgb_best_shift"] for op in ops] == [30.5, 30.6, 28.0]
    assert held["c"]["psnr_rgb"] == 27.0  # the chosen variant's plain PSNR comes along
    assert dict(held["c"]["ranking"]) == {"default": 30.0, "tuned": 31.0, "steady": 30.55}
    # a tie goes to the candidate named first (the defaults), so a variant has to win to be chosen
    tie = quality_heldout.leave_one_out(_scores({"default": [30, 30], "other": [30, 30]}, ["a", "b"]), ["a", "b"])
    assert {h["chosen"] for h in tie.values()} == {"default"}
    # with a margin, a variant ahead of the shipped recipe by less than it is not chosen; by more, it is
    close = _scores({"default": [30.0, 30.0, 30.0], "other": [30.04, 30.04, 30.2]}, ops)
    picked = {op: h["chosen"] for op, h in quality_heldout.leave_one_out(close, ops, margin=0.05).items()}
    assert picked == {"a": "other", "b": "other", "c": "default"}  # a, b: +0.12 over the others; c: +0.04
    assert {h["chosen"] for h in quality_heldout.leave_one_out(close, ops).values()} == {"other"}
    table = quality_heldout.heldout_table(held, {op: {"bicubic": {"psnr_rgb_best_shift": 29.0}} for op in ops})
    assert "| c | tuned | 27.00 | 28.00 | 29.00 |" in table and table.splitlines()[-1].startswith(
        "| mean | | 28.70 | 29.70"
    )


def test_candidates_without_results_are_one_line(tmp_path: Path) -> None:
    from quality_suite import heldout as quality_heldout

    mean = {"psnr_rgb": 29.0, "psnr_rgb_best_shift": 29.5}
    (tmp_path / "results.json").write_text(json.dumps({"operators": {"a": {"rows": {"cyclesr": {"mean": mean}}}}}))
    with pytest.raises(SystemExit, match=r"no results for candidate 'v2' .*run quality.py with --tag v2 first"):
        quality_heldout.candidate_scores(tmp_path, ["default", "v2"], ["a"])
    with pytest.raises(SystemExit, match=r"candidate 'default' has no CycleSR result on b"):
        quality_heldout.candidate_scores(tmp_path, ["default"], ["a", "b"])


def test_joint_verdict_needs_an_sr_gain_and_a_generator_that_holds() -> None:
    from quality_suite import stages as quality_stages

    def stage(sr: tuple[float, float], psnr: tuple[float, float], spectral: tuple[float, float]) -> dict:
        return {
            "sr": {
                w: {"psnr_rgb": v - 0.3, "psnr_rgb_best_shift": v} for w, v in zip(("before", "after"), sr, strict=True)
            },
            "translation": {
                w: {"psnr": p, "spectral_distance": s}
                for w, p, s in zip(("before", "after"), psnr, spectral, strict=True)
            },
        }

    assert quality_stages.joint_verdict(stage((30.0, 30.2), (33.0, 33.1), (1.0, 0.9))) == {
        "sr_gains": True,
        "g_holds": True,
    }
    assert quality_stages.joint_verdict(stage((30.0, 30.05), (33.0, 33.1), (1.0, 0.9)))["sr_gains"] is False
    assert quality_stages.joint_verdict(stage((30.0, 30.2), (33.0, 32.9), (1.0, 0.9)))["g_holds"] is False
    assert quality_stages.joint_verdict(stage((30.0, 30.2), (33.0, 33.1), (1.0, 1.2)))["g_holds"] is False
    assert quality_stages.joint_verdict(stage((30.0, 30.2), (33.0, 32.96), (1.0, 1.04)))["g_holds"] is True  # ±0.05
    table = quality_stages.joint_table({"blur": stage((30.0, 30.2), (33.0, 32.9), (1.0, 0.9))})
    assert "| blur | 29.70 → 29.90 | 30.00 → 30.20 | 33.00 → 32.90 | 1.00 → 0.90 | – | yes | **no** |" in table
    redrawn = stage((30.0, 30.2), (33.0, 32.9), (1.0, 0.9))
    redrawn["translation"]["operator_redrawn"] = {"psnr": 36.123, "spectral_distance": 0.5}
    assert "| 1.00 → 0.90 | 36.12 / 0.50 | yes |" in quality_stages.joint_table({"blur": redrawn})


def test_the_operator_redrawn_is_g_s_reference() -> None:
    """Another draw of the true operator, seeded apart from the test's: the same every call, a different image from
    the test draw, and scored against the test LR like G's output (identical images: no spectral distance)."""
    from quality_suite.data import redraw_test_lr
    from quality_suite.stages import redraw_fidelity

    rng = np.random.default_rng(0)
    hr = np.clip(128 + np.cumsum(rng.normal(0, 6, (128, 128, 3)), axis=1), 0, 255).astype(np.uint8)
    pairs = [("a", np.zeros((32, 32, 3), np.uint8), hr)]
    redrawn = redraw_test_lr("noise_jpeg", pairs)[0]
    assert redrawn.shape == (32, 32, 3) and np.array_equal(redraw_test_lr("noise_jpeg", pairs)[0], redrawn)
    test_draw = get_degradation("noise_jpeg").degrade(
        hr, np.random.default_rng([3, quality_data.OPERATOR_IDS["noise_jpeg"], 0]), 4
    )
    assert not np.array_equal(redrawn, test_draw)
    assert redraw_fidelity("noise_jpeg", [("a", redrawn, hr)])["spectral_distance"] == pytest.approx(0.0, abs=1e-6)
    against_test = redraw_fidelity("noise_jpeg", [("a", test_draw, hr)])
    assert 20.0 < against_test["psnr"] < 60.0 and against_test["spectral_distance"] > 0.0


def test_production_option_trains_every_row_with_the_production_networks_and_recipe(tmp_path: Path) -> None:
    """--production: configs/cyclesr.yaml's networks, losses and learning rates in every row (the SR net of the
    supervised rows too), LR 32² crops, runs under WORK/production; the benchmark's budget and precision."""
    import quality
    from quality_suite.recipes import make_configs

    production = yaml.safe_load((REPO / "configs" / "cyclesr.yaml").read_text())
    args = quality.parse_args(["--production", "--work", str(tmp_path)])
    runs = {
        r.run_id: r.config for r in make_configs(args, tmp_path / "data", tmp_path, ["blur"], ["cyclesr", "oracle"])
    }
    assert set(runs) == {"blur/cyclesr", "blur/oracle"}
    for run_id, config in runs.items():
        assert config["model"] == production["model"] and config["loss"] == production["loss"], run_id
        assert config["optim"]["sr_lr"] == production["optim"]["sr_lr"] and config["data"]["hr_patch"] == 128
        assert (
            config["output_dir"] == str(tmp_path / "production" / run_id) and "mixed_precision" not in config["train"]
        )
    small = quality.parse_args(["--work", str(tmp_path)])
    config = make_configs(small, tmp_path / "data", tmp_path, ["blur"], ["cyclesr"])[0].config
    assert config["model"]["generator"]["args"]["ngf"] == 16 and config["data"]["hr_patch"] == 96
