"""Unpaired-SR quality benchmark on real photos, one table per degradation operator.

Data (benchmarks/quality_suite/data.py): 33 photographs from Debian's mate-backgrounds, lomiri-wallpapers-16.04/-20.04
and plasma-workspace-wallpapers (`apt-get download` + `dpkg -x`, .debs kept in --cache), split by scene into an
HR domain (13 scenes), a real-LR domain (13) and a test set (7), each mixing nature, man-made scenes and textures.
Per operator of `cyclesr_dist.data.degrade` (--operators; default blur, noise_jpeg, camera, downscale_motion and the
three families added as held-out ones, resize_chain, phone and webcam):
the real-LR scenes degraded by it (2 draws each, fixed seeds) form the real-LR domain, and the test set is each
test scene's centre crop (≤ --test-crop²) with its degraded LR. A model never sees the operator's (LR, HR) pairs
unless it is that operator's oracle.

Rows, all the same SR network (--sr-net, --sr-args), seed, batch, patch, optimizer (the trainer's SR group) and
the same number of SR-network updates with the same learning-rate schedule:
  bicubic          no training
  bicubic-trained  supervised: every epoch in the SR pre-training stage, LR = bicubic ×1/4 of the HR crop
  blind            supervised on Real-ESRGAN's second-order random degradation (data.hr_to_lr=realesrgan;
                   target = the unsharp-masked HR, as that recipe trains)
  realsr           RealSR-style, the strongest no-pairs alternative: supervised on HR degraded by what
                   `cyclesr data fit-degradation` fits to the operator's real LR (a kernel learned against a local
                   discriminator, noise patches cut from the real LR, the measured JPEG range)
  cyclesr          unpaired: translation-only epochs (the SR net is not updated), then SR pre-training, then
                   joint; the SR budget counts only the steps that update the SR network
  oracle           supervised on the true operator (data.hr_to_lr=<operator>): each HR crop is cut and flipped,
                   then degraded on the fly
bicubic-trained and blind do not depend on the operator: they are trained once and scored on every test set.
Every model is trained by `python -m cyclesr_dist.cli train` in a subprocess (resumable: re-running continues from
the newest checkpoint, and a finished run is reused as it is, whatever settings made it: a changed setting needs
its own --tag or the run's folder removed; --jobs N runs N at once, each with OMP_NUM_THREADS = cores // N) and
scored with `evaluate_pairs` (PSNR/SSIM, RGB and Y, shave 4). Also per operator: translation fidelity of CycleSR's
G on the test scenes (`metrics.translation_metrics` of G(clean LR) and of the clean LR against the true LR), and
the targets: CycleSR ≥ bicubic + 0.1 dB, ≥ blind, ≥ RealSR-style, ≥ 70 % of the oracle's gain over the best of
bicubic-trained, blind and RealSR-style; and the joint stage's before/after (`quality_suite.stages`: the SR net and G at
the end of SR pre-training against the end; CycleSR keeps a checkpoint every epoch). --candidates TAGS adds the
leave-one-operator-out table (`quality_suite.heldout`): each operator scored by the variant the others choose, the
first tag (the shipped recipe) unless another beats it there by more than --loo-margin (seed noise).
Scores are cached in WORK/eval_cache.json by checkpoint, test set and scoring parameters.
With --time-to-quality, CycleSR keeps a checkpoint per epoch and the report adds when (SR updates, training
seconds) its SR net first scores above bicubic and above the blind row's final PSNR (benchmarks/quality_suite/ttq.py).

CycleSR's networks default to the options measured to help (docs/history/quality-*.md): identity-skip generators
at full LR resolution with per-pixel noise at the tail and a JPEG stage at G's end drawing its quality per image
from the range measured on the operator's real LR (--g-jpeg-quality auto, as `cyclesr data jpeg-quality` does)
and a fixed Gaussian blur of G's input at the σ the trainer measures (--g-input-blur auto), high-pass
discriminators, cycle and identity L1s on the low band (--content-low-pass), a bicubic-skip SR net, and the SR
term's weight in G's update cut once G's fine band exceeds the real LR's by 2 dB (--cycle-sr-fine-cap; none: vega's
constant weight).
`--set KEY=VALUE` passes any trainer override to every trained row.

    python benchmarks/quality.py --work runs/quality --jobs 2       # the small budget, 7 operators
    python benchmarks/quality.py --work /tmp/q --quick --operators blur    # smoke test (≈ 2 min; meaningless numbers)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from quality_suite.data import SCALE, SCENES, build_data, fetch_photos, load_test_pairs, splits_for  # noqa: E402
from quality_suite.heldout import candidate_scores, heldout_table, leave_one_out, results_file  # noqa: E402
from quality_suite.options import TRAINED, parse_options  # noqa: E402
from quality_suite.recipes import make_configs, production_recipe, run_dir  # noqa: E402
from quality_suite.report import (  # noqa: E402
    check_targets,
    format_targets,
    mean_over_operators,
    mean_table,
    operator_table,
    translation_table,
)
from quality_suite.runs import (  # noqa: E402
    checkpoint_step,
    evaluate_rows,
    read_wall,
    train_runs,
    translation_fidelity,
    use_eval_cache,
)
from quality_suite.stages import REDRAWN, joint_before_after, joint_table, redraw_fidelity  # noqa: E402
from quality_suite.ttq import first_passing, sr_curve, ttq_table  # noqa: E402
from quality_suite.widths import side_by_side  # noqa: E402

from cyclesr_dist.data.degrade import DEGRADATIONS  # noqa: E402
from cyclesr_dist.data.images import CLEAN_LR  # noqa: E402

# The targets again with every row at its best shift: a sampling grid offset from bicubic's is invisible without
# pairs, so only the oracle can learn it; this shows how much of the rest CycleSR recovers.
SHIFTED = "By best-shift PSNR (each row at its best shift; the operator's grid offset taken out):"


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parse_options(argv, __doc__)


def time_to_quality(args: argparse.Namespace, cyclesr_dir: Path, pairs: list, results: dict) -> dict:
    """CycleSR's test PSNR at every kept checkpoint and where it first passes bicubic and the blind recipe's final
    PSNR (same SR budget); a checkpoint every epoch, so the answer is exact to an epoch."""
    baselines = {r: results[r]["mean"]["psnr_rgb"] for r in ("bicubic", "blind") if r in results}
    sr_start = args.translation_epochs * args.steps_per_epoch
    curve = sr_curve(cyclesr_dir, pairs, sr_start, args.device, args.tile, 0, args.curve_every)
    return {"baselines": baselines, "curve": curve, "first": first_passing(curve, baselines)}


def _stop(signum: int, _frame: object) -> None:
    # a SIGTERM (a session's end, `kill`) unwinds like Ctrl-C: the runs stop at a checkpoint and their time is kept
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _stop)
    args = parse_args(argv)
    operators = [o.strip() for o in args.operators.split(",") if o.strip()]
    rows = [m.strip() for m in args.models.split(",") if m.strip()]
    for given, valid, what in ((operators, list(DEGRADATIONS), "operator"), (rows, TRAINED, "model")):
        if not given or set(given) - set(valid):
            raise SystemExit(f"unknown or no {what}(s) {sorted(set(given) - set(valid))}; valid: {', '.join(valid)}")
    if args.clean_lr not in CLEAN_LR:
        raise SystemExit(f"unknown --clean-lr {args.clean_lr!r}; valid: {', '.join(CLEAN_LR)}")
    if args.shift_steps < 1 or args.max_shift < 0:
        raise SystemExit(
            f"--shift-steps must be >= 1 (steps per HR px) and --max-shift >= 0, got {args.shift_steps} and "
            f"{args.max_shift}"
        )
    work, data = Path(args.work), Path(args.work) / "data"
    work.mkdir(parents=True, exist_ok=True)
    splits = splits_for(args.quick)
    packages = sorted({SCENES[s][0] for names in splits.values() for s in names})
    given_debs = {Path(d).name.split("_")[0]: d for d in args.deb}
    debs = fetch_photos(Path(args.cache), packages, given_debs)
    manifest = build_data(Path(args.cache), data, operators, args.test_crop, args.quick, debs)
    runs = make_configs(args, data, work, operators, rows)
    t0 = time.perf_counter()
    walls = train_runs(runs, work, args.overrides, args.jobs)
    print(f"training finished in {time.perf_counter() - t0:.0f}s", flush=True)

    sr = production_recipe()["model"]["sr"] if args.production else {"name": args.sr_net, "args": args.sr_args}
    sr_net = f"{sr['name']} {sr['args']}" + (" (configs/cyclesr.yaml's networks and recipe)" if args.production else "")
    sr_updates = (args.pretrain_epochs + args.joint_epochs) * args.steps_per_epoch
    total = (args.translation_epochs + args.pretrain_epochs + args.joint_epochs) * args.steps_per_epoch
    print(
        f"\nx{SCALE} on {len(splits['test'])} held-out scenes (HR ≤ {args.test_crop}², shave {SCALE}); {sr_net}, "
        f"{sr_updates} SR updates per trained model (CycleSR: {total} steps), batch "
        f"{args.batch_size}, HR patch {args.hr_patch}; PSNR (RGB) per scene; wall = training time, "
        f"{args.jobs} run(s) at a time"
    )
    use_eval_cache(work / "eval_cache.json")
    per_operator, report = {}, {}
    for op in operators:
        pairs = load_test_pairs(data, op, splits["test"])
        # Rows trained now, and rows an earlier invocation with the same --work trained (shared baselines).
        row_dirs = {r: run_dir(work, r, op, args.tag, args.production) for r in TRAINED}
        row_dirs = {r: d for r, d in row_dirs.items() if r in rows or checkpoint_step(d) > 0}
        results = evaluate_rows(row_dirs, pairs, args.device, args.tile, args.max_shift, args.shift_steps)
        row_walls = {r: read_wall(d) for r, d in row_dirs.items()}
        fidelity = translation_fidelity(row_dirs["cyclesr"], pairs, args.device) if "cyclesr" in row_dirs else None
        if fidelity is not None:  # the score G would get were it the true degradation
            fidelity["mean"][REDRAWN] = redraw_fidelity(op, pairs)
        targets = check_targets({r: res["mean"]["psnr_rgb"] for r, res in results.items()})
        shifted = check_targets({r: res["mean"]["psnr_rgb_best_shift"] for r, res in results.items()})
        per_operator[op] = results
        report[op] = {"rows": results, "wall_s": row_walls, "translation": fidelity, "targets": targets}
        report[op]["targets_best_shift"] = shifted
        print(f"\n### {op}\n\n{operator_table(results, row_walls)}\n")
        if fidelity is not None:
            print(f"Translation fidelity (CycleSR's G):\n\n{translation_table(fidelity)}\n")
        print(f"{format_targets(targets)}\n\n{SHIFTED}\n\n{format_targets(shifted)}")
        if fidelity is not None:
            joint_start = (args.translation_epochs + args.pretrain_epochs) * args.steps_per_epoch
            after = (results["cyclesr"]["mean"], fidelity)
            stage = joint_before_after(
                row_dirs["cyclesr"], pairs, joint_start, after, args.device, args.tile, args.max_shift,
                args.shift_steps,
            )  # fmt: skip
            if stage is not None:
                stage["translation"]["operator_redrawn"] = fidelity["mean"][REDRAWN]
                report[op]["joint_stage"] = stage
                print(f"\nThe joint stage (CycleSR):\n\n{joint_table({op: stage})}\n", flush=True)
        if args.time_to_quality and "cyclesr" in row_dirs:
            report[op]["time_to_quality"] = time_to_quality(args, row_dirs["cyclesr"], pairs, results)
            print(f"Time to quality (CycleSR):\n\n{ttq_table({op: report[op]['time_to_quality']})}\n", flush=True)
    if args.time_to_quality:
        ttq = {op: r["time_to_quality"] for op, r in report.items() if "time_to_quality" in r}
        print(f"\n### time to quality (CycleSR)\n\n{ttq_table(ttq)}\n")
    joint = {op: r["joint_stage"] for op, r in report.items() if "joint_stage" in r}
    if len(joint) > 1:
        print(f"\n### the joint stage, every operator\n\n{joint_table(joint)}\n")
    means = mean_over_operators(per_operator)
    mean_targets = check_targets({r: m["psnr_rgb"] for r, m in means.items()})
    mean_shifted = check_targets({r: m["psnr_rgb_best_shift"] for r, m in means.items()})
    print(f"\n### mean over {len(operators)} operator(s)\n\n{mean_table(per_operator, means)}\n")
    print(f"{format_targets(mean_targets)}\n\n{SHIFTED}\n\n{format_targets(mean_shifted)}")
    summary = {
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
        "args": vars(args),
        "sr_updates": sr_updates,
        "cyclesr_total_steps": total,
        "splits": splits,
        "data_manifest": str(data / "manifest.json"),
        "scenes": manifest["scenes"],
        "runs": {r.run_id: {"output_dir": str(r.output_dir), **walls[r.run_id]} for r in runs},
        "operators": report,
        "mean_over_operators": means,
        "targets_mean": mean_targets,
        "targets_mean_best_shift": mean_shifted,
    }
    # a variant's results beside the default's, so that variants run side by side do not overwrite each other
    # the production networks' results as variant "production" (or "production-TAG") beside the small recipe's
    results = results_file(work, "-".join(["production"] * args.production + [args.tag] * bool(args.tag)))
    results.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {results}")
    if args.production:
        beside = side_by_side(results_file(work, args.tag), summary)
        print(f"\n### the production networks beside the small recipe\n\n{beside}")
    if args.candidates:
        tags = [t.strip() for t in args.candidates.split(",") if t.strip()]
        heldout = leave_one_out(candidate_scores(work, tags, operators), operators, args.loo_margin)
        baselines = {op: {r: res["mean"] for r, res in rows.items()} for op, rows in per_operator.items()}
        print(
            f"\n### held out: each operator scored by the variant the other operators choose (another than {tags[0]} "
            f"only if their mean is higher by more than {args.loo_margin:g} dB)\n"
        )
        print(heldout_table(heldout, baselines))
        summary["heldout"] = {"candidates": tags, "margin": args.loo_margin, "operators": heldout}
        results.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
