"""Does an unpaired monitor rank CycleSR's checkpoints the way the SR net's test PSNR does? (issue 33, item 5)

A user with no (real LR, HR) pairs can still hold out some of their own HR photos and some of their own real-LR
photos (of other scenes). This script plays that user on the quality benchmark's runs (benchmarks/quality.py,
--time-to-quality: a checkpoint every 50 steps): per operator, the test scenes are split in two halves by scene,
MONITOR_HR (their HR used without their LR) and MONITOR_LR (their real LR used without their HR; no scene is in
both, so nothing is ever compared pixel by pixel with its own pair). With --same-scenes both halves are all seven
test scenes, as the issue first proposed (still unpaired in use, but content-matched statistics flatter the
monitor). For every kept checkpoint past the translation-only stage:

  unpaired (what the monitor may use; `cyclesr_dist.cyclesr.unpaired`), G and SR from that checkpoint:
    synthetic_psnr          SR(G(clean LR of held-out HR))  vs that HR (dB; the chain the joint stage trains on)
    lr_cycle_psnr           G(clean LR of SR(held-out real LR)) vs that real LR (dB; needs no HR at all)
    spectral_band_distance  G(clean LR) set vs real-LR set, band log-power shape (dB)
    noise_floor_log_ratio   |log| noise-floor ratio of the two LR sets
    blockiness_difference   |Δ| 8×8-grid blockiness of the two LR sets
    colour_distance         |Δ| saturation mean + std of the two LR sets
    sr_spectral_distance    SR(held-out real LR) set vs held-out HR set, band log-power shape (dB)
  truth (only to score the monitor): the SR net's mean RGB PSNR (shave 4, = evaluate_pairs' psnr_rgb) on all
  seven test pairs.

Per run: Spearman ρ between the truth and each metric signed so that higher is better, and the regret of the
checkpoint each metric picks (best truth − truth of its argmax, dB; ties go to the later step). The combined score
is the mean of the within-run ranks of a subset (≤ 3) of the metrics; the subset is chosen leave-one-operator-out
(best mean ρ over the other operators' runs) and scored on the held-out operator.

Per-checkpoint results are cached in WORK/monitor_cache.json; the report goes to WORK/monitor.json.

    OMP_NUM_THREADS=1 python benchmarks/quality_monitor.py --work runs/quality
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from quality_suite.data import SCALE, load_test_pairs, splits_for  # noqa: E402
from quality_suite.options import DEFAULT_OPERATORS  # noqa: E402
from quality_suite.runs import load_generator  # noqa: E402
from scipy.stats import rankdata, spearmanr  # noqa: E402

from cyclesr_dist.atomic import atomic_write_text  # noqa: E402
from cyclesr_dist.checkpoint_format import META, complete_checkpoints, read_checkpoint  # noqa: E402
from cyclesr_dist.cyclesr import unpaired  # noqa: E402
from cyclesr_dist.data.images import clean_downscale, clean_lr_kind, model_to_uint8, uint8_to_model  # noqa: E402
from cyclesr_dist.serve.export import load_sr  # noqa: E402
from cyclesr_dist.serve.tiling import upscale_image  # noqa: E402

RUNS = ["cyclesr-noreal", "cyclesr-csr10"]  # the recipe before real_noise and its cycle_sr_lam 10 variant
VERSION = 1  # bump when a cached metric's definition changes
# metric -> +1 if higher is better, -1 if lower is better
METRICS = {
    "synthetic_psnr": 1,
    "lr_cycle_psnr": 1,
    "spectral_band_distance": -1,
    "noise_floor_log_ratio": -1,
    "blockiness_difference": -1,
    "colour_distance": -1,
    "sr_spectral_distance": -1,
}
MAX_COMBINED = 3


def as_saved(t: torch.Tensor) -> torch.Tensor:
    """A [-1, 1] CHW tensor as an 8-bit image would hold it."""
    return uint8_to_model(model_to_uint8(t))


def centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    if side <= 0:
        return img
    h, w = img.shape[:2]
    th, tw = min(h, side) // SCALE * SCALE, min(w, side) // SCALE * SCALE
    top, left = (h - th) // 2 // SCALE * SCALE, (w - tw) // 2 // SCALE * SCALE  # keeps the LR grid aligned
    return img[top : top + th, left : left + tw]


def load_pairs(work: Path, op: str, crop: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    pairs = load_test_pairs(work / "data", op, splits_for(False)["test"])
    out = []
    for name, lr, hr in pairs:
        hr = centre_crop(hr, crop)
        h, w = hr.shape[0] // SCALE, hr.shape[1] // SCALE
        ly, lx = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
        out.append((name, lr[ly : ly + h, lx : lx + w], hr))
    return out


@torch.no_grad()
def checkpoint_metrics(step_dir: Path, pairs: list, kind: str, same_scenes: bool) -> dict[str, float]:
    """The unpaired metrics and the paired truth of one checkpoint."""
    sr_net = load_sr(step_dir)
    gen = load_generator(step_dir)
    torch.manual_seed(0)  # G draws noise (and a JPEG quality): the same draws for every checkpoint
    monitor_hr = pairs if same_scenes else pairs[0::2]
    monitor_lr = pairs if same_scenes else pairs[1::2]
    out: dict[str, float] = {}
    # truth: SR of every real test LR against its HR
    sr_real = {name: upscale_image(sr_net, lr, tile=None) for name, lr, _ in pairs}
    out["test_psnr"] = unpaired.mean_psnr(
        [uint8_to_model(sr_real[n]) for n, _, _ in pairs], [uint8_to_model(hr) for _, _, hr in pairs], SCALE
    )
    # G side: G(clean LR of held-out HR) against the held-out real LR (other scenes)
    hr_t = [uint8_to_model(hr) for _, _, hr in monitor_hr]
    fake = [as_saved(gen(clean_downscale(h[None], SCALE, kind)).clamp(-1, 1)[0]) for h in hr_t]
    real = [uint8_to_model(lr) for _, lr, _ in monitor_lr]
    out.update(unpaired.lr_set_metrics(fake, real))
    # raw values behind the distances, for diagnosis only (not ranked)
    delta = unpaired.band_log_power(fake) - unpaired.band_log_power(real)
    out.update({f"band_delta_{i}": float(d) for i, d in enumerate(delta)})
    out["noise_floor_fake"], out["noise_floor_real"] = unpaired.noise_floor(fake), unpaired.noise_floor(real)
    out["blockiness_fake"], out["blockiness_real"] = unpaired.blockiness(fake), unpaired.blockiness(real)
    # SR side on synthetic pairs: SR(G(clean LR)) against the HR it came from
    sr_fake = [uint8_to_model(upscale_image(sr_net, model_to_uint8(f), tile=None)) for f in fake]
    out["synthetic_psnr"] = unpaired.mean_psnr(sr_fake, hr_t, SCALE)
    # SR side on real LR, no HR: the LR cycle, and SR outputs' spectrum shape against held-out HR photos
    sr_mon = [uint8_to_model(sr_real[n]) for n, _, _ in monitor_lr]
    cycled = [as_saved(gen(clean_downscale(s[None], SCALE, kind)).clamp(-1, 1)[0]) for s in sr_mon]
    out["lr_cycle_psnr"] = unpaired.mean_psnr(cycled, real, 1)
    out["sr_spectral_distance"] = unpaired.spectral_band_distance(sr_mon, hr_t)
    return out


def collect(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{op: {run: [per-checkpoint row, step order]}}, computing only what the cache lacks."""
    cache_path = args.work / "monitor_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for op in args.operators:
        pairs = load_pairs(args.work, op, args.crop)
        for run in args.runs:
            run_dir = args.work / op / run
            kind = clean_lr_kind(yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["hr_to_lr"])
            for step_dir in complete_checkpoints(run_dir / "checkpoints"):
                step = read_checkpoint(step_dir).step
                if step <= args.min_step:
                    continue
                stamp = (step_dir / META).stat().st_mtime_ns
                key = json.dumps([VERSION, op, run, step, stamp, args.crop, args.same_scenes])
                if key not in cache:
                    t0 = time.perf_counter()
                    cache[key] = checkpoint_metrics(step_dir, pairs, kind, args.same_scenes)
                    atomic_write_text(cache_path, json.dumps(cache))
                    print(f"{op}/{run} step {step}: {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
                rows.setdefault(op, {}).setdefault(run, []).append({"step": step, **cache[key]})
    return rows


def signed(row: dict[str, Any], metric: str) -> float:
    return METRICS[metric] * row[metric]


def combined_scores(rows: list[dict[str, Any]], subset: tuple[str, ...]) -> list[float]:
    """Mean over `subset` of each checkpoint's within-run rank (higher = better): scale-free, so a dB metric and a
    ratio mix without weights to tune."""
    ranks = [rankdata([signed(r, m) for r in rows]) for m in subset]
    return list(np.mean(ranks, axis=0))


def rho(truth: list[float], score: list[float]) -> float:
    if len(set(score)) < 2:
        return float("nan")  # a constant score ranks nothing
    return float(spearmanr(truth, score).statistic)


def regret(truth: list[float], score: list[float]) -> float:
    """Best truth − truth at the score's argmax (the latest checkpoint among ties)."""
    best = max(score)
    pick = max(i for i, s in enumerate(score) if s == best)
    return max(truth) - truth[pick]


def analyse(rows: dict[str, dict[str, list[dict[str, Any]]]], joint_start: int) -> dict[str, Any]:
    per_run: dict[str, dict[str, Any]] = {}
    for op, runs in rows.items():
        for run, rs in runs.items():
            truth = [r["test_psnr"] for r in rs]
            entry = {"steps": [r["step"] for r in rs], "test_psnr": truth, "rho": {}, "regret": {}}
            for m in METRICS:
                score = [signed(r, m) for r in rs]
                entry["rho"][m], entry["regret"][m] = rho(truth, score), regret(truth, score)
            entry["regret"]["last"] = max(truth) - truth[-1]
            # the baseline any monitor must beat: test PSNR mostly rises with training, so "later is better" ranks
            entry["rho"]["step"] = rho(truth, entry["steps"])
            # the joint stage alone (G trains again; where a monitor should catch G drifting from the real LR)
            joint = [i for i, r in enumerate(rs) if r["step"] > joint_start]
            entry["rho_joint"] = {
                m: rho([truth[i] for i in joint], [signed(rs[i], m) if m in METRICS else rs[i]["step"] for i in joint])
                for m in [*METRICS, "step"]
            }
            per_run[f"{op}/{run}"] = entry
    subsets = [s for k in range(1, MAX_COMBINED + 1) for s in itertools.combinations(METRICS, k)]

    def mean_rho(subset: tuple[str, ...], ops: list[str]) -> float:
        vals = [
            rho([r["test_psnr"] for r in rs], combined_scores(rs, subset)) for op in ops for rs in rows[op].values()
        ]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else -math.inf

    heldout = {}
    for op in rows:
        others = [o for o in rows if o != op]
        chosen = max(subsets, key=lambda s: mean_rho(s, others))
        heldout[op] = {"subset": list(chosen), "train_mean_rho": mean_rho(chosen, others), "runs": {}}
        for run, rs in rows[op].items():
            truth, score = [r["test_psnr"] for r in rs], combined_scores(rs, chosen)
            heldout[op]["runs"][run] = {"rho": rho(truth, score), "regret": regret(truth, score)}
    everywhere = max(subsets, key=lambda s: mean_rho(s, list(rows)))
    return {
        "per_run": per_run,
        "heldout": heldout,
        "chosen_on_all": {"subset": list(everywhere), "mean_rho": mean_rho(everywhere, list(rows))},
    }


def tables(result: dict[str, Any]) -> str:
    per_run, names = result["per_run"], list(METRICS)
    short = {m: m.replace("_distance", "_d").replace("noise_floor_log_ratio", "noise_ratio") for m in names}
    short["step"] = "step"
    out = ["Spearman ρ (test PSNR vs metric signed so that higher is better; nan = constant metric):", ""]
    out += ["| run | " + " | ".join(short[m] for m in names) + " | combined (held out) | step (baseline) |"]
    out += ["|---|" + "---:|" * (len(names) + 2)]
    for key, e in per_run.items():
        op, run = key.split("/")
        held = result["heldout"][op]["runs"][run]
        cells = [f"{e['rho'][m]:.2f}" for m in names] + [f"{held['rho']:.2f}", f"{e['rho']['step']:.2f}"]
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    means = [np.nanmean([e["rho"][m] for e in per_run.values()]) for m in [*names, "step"]]
    held_mean = np.nanmean([r["rho"] for h in result["heldout"].values() for r in h["runs"].values()])
    cells = [f"{v:.2f}" for v in means[:-1]] + [f"{held_mean:.2f}", f"{means[-1]:.2f}"]
    out.append("| **mean** | " + " | ".join(cells) + " |")
    out += ["", "Spearman ρ within the joint stage only (G trains again):", ""]
    out += ["| run | " + " | ".join(short[m] for m in [*names, "step"]) + " |"]
    out += ["|---|" + "---:|" * (len(names) + 1)]
    for key, e in per_run.items():
        out.append(f"| {key} | " + " | ".join(f"{e['rho_joint'][m]:.2f}" for m in [*names, "step"]) + " |")
    out += ["", "Regret (dB): best checkpoint's test PSNR − that of the checkpoint the metric picks:", ""]
    out += ["| run | test PSNR range | " + " | ".join(short[m] for m in names) + " | combined | last |"]
    out += ["|---|---|" + "---:|" * (len(names) + 2)]
    for key, e in per_run.items():
        op, run = key.split("/")
        held = result["heldout"][op]["runs"][run]
        span = f"{min(e['test_psnr']):.2f}–{max(e['test_psnr']):.2f}"
        cells = [f"{e['regret'][m]:.2f}" for m in names] + [f"{held['regret']:.2f}", f"{e['regret']['last']:.2f}"]
        out.append(f"| {key} | {span} | " + " | ".join(cells) + " |")
    regrets = [np.mean([e["regret"][m] for e in per_run.values()]) for m in [*names]]
    held_reg = np.mean([r["regret"] for h in result["heldout"].values() for r in h["runs"].values()])
    last_reg = np.mean([e["regret"]["last"] for e in per_run.values()])
    out.append("| **mean** | | " + " | ".join(f"{v:.2f}" for v in regrets) + f" | {held_reg:.2f} | {last_reg:.2f} |")
    out += ["", "Combined score, leave one operator out (mean within-run rank of the subset chosen on the others):", ""]
    out += ["| held-out operator | subset chosen on the other 5 | their mean ρ | ρ per run | regret per run (dB) |"]
    out += ["|---|---|---:|---|---|"]
    for op, h in result["heldout"].items():
        rhos = ", ".join(f"{r['rho']:.2f}" for r in h["runs"].values())
        regs = ", ".join(f"{r['regret']:.2f}" for r in h["runs"].values())
        out.append(f"| {op} | {' + '.join(h['subset'])} | {h['train_mean_rho']:.2f} | {rhos} | {regs} |")
    c = result["chosen_on_all"]
    out += ["", f"Chosen on all operators (not held out): {' + '.join(c['subset'])}, mean ρ {c['mean_rho']:.2f}"]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--operators", nargs="+", default=DEFAULT_OPERATORS)
    parser.add_argument("--runs", nargs="+", default=RUNS)
    parser.add_argument("--crop", type=int, default=0, help="HR centre crop side (0 = the test images as they are)")
    parser.add_argument("--min-step", type=int, default=300, help="skip checkpoints up to this step (SR untrained)")
    parser.add_argument("--joint-start", type=int, default=500, help="last step before the joint stage")
    parser.add_argument("--same-scenes", action="store_true", help="monitor HR and real LR both = all test scenes")
    args = parser.parse_args()
    missing = [
        str(d)
        for op in args.operators
        for d in [args.work / "data" / op / "test", *(args.work / op / run / "checkpoints" for run in args.runs)]
        if not d.is_dir()
    ]
    if missing:
        raise SystemExit(
            f"quality_monitor: {missing[0]} not found ({len(missing)} missing): train the runs first with "
            f"benchmarks/quality.py --work {args.work} --time-to-quality --no-g-real-noise --tag noreal (and "
            "--tag csr10 --cycle-sr-lam 10 for cyclesr-csr10)"
        )
    t0 = time.perf_counter()
    rows = collect(args)
    result = analyse(rows, args.joint_start)
    result.update(
        {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "rows": rows,
            "seconds": time.perf_counter() - t0,
        }
    )
    name = "monitor-same-scenes.json" if args.same_scenes else "monitor.json"
    atomic_write_text(args.work / name, json.dumps(result, indent=1))
    print(tables(result))
    print(f"\n{time.perf_counter() - t0:.0f}s; wrote {args.work / name}")


if __name__ == "__main__":
    main()
