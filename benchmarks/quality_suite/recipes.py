"""The rows' training runs as trainer configs: where each run lives, the schedules that give every SR net the same
updates at the same learning rates, CycleSR's generator and discriminator arguments from the command line, and the
RealSR-style row's degradation fitted to the operator's real LR (`cyclesr data fit-degradation`'s code)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cyclesr_dist.cyclesr.degradation_fit import FitSettings, describe_fit, fit_degradation, save_fit
from cyclesr_dist.data.images import list_images, load_rgb
from cyclesr_dist.data.jpeg_estimate import estimate_folder, quality_summary

from .data import SCALE
from .runs import Run

PRODUCTION = Path(__file__).resolve().parents[2] / "configs" / "cyclesr.yaml"


def run_dir(work: Path, row: str, operator: str, tag: str = "", production: bool = False) -> Path:
    """Where a row's run lives; a tagged CycleSR variant gets its own folder next to the shared baselines. With the
    production networks every row lives under WORK/production (its SR net is another), sharing WORK's data."""
    root = work / "production" if production else work
    if row in ("bicubic-trained", "blind"):
        return root / row
    return root / operator / (f"{row}-{tag}" if row == "cyclesr" and tag else row)


def production_recipe() -> dict:
    """configs/cyclesr.yaml's networks, losses, optimiser settings and update options: what --production trains
    (crops, batch, precision and the step budget stay the benchmark's)."""
    import yaml

    config = yaml.safe_load(PRODUCTION.read_text())
    optim = {k: config["optim"][k] for k in ("cyc_lr", "sr_lr", "betas", "grad_clip")}
    return {"model": config["model"], "loss": config["loss"], "optim": optim, "train": config["train"]}


def make_configs(args: argparse.Namespace, data: Path, work: Path, operators: list[str], rows: list[str]) -> list[Run]:
    """Trainer configs. Epoch e of a supervised run is epoch e + translation_epochs of the CycleSR run, so the SR
    network sees the same number of updates at the same learning rates in every run."""
    spe = args.steps_per_epoch
    trans, pre, joint, decay = args.translation_epochs, args.pretrain_epochs, args.joint_epochs, args.decay_epochs
    if decay > pre + joint:
        raise SystemExit("--decay-epochs must not exceed --pretrain-epochs + --joint-epochs")
    sr_epochs = pre + joint
    generator_args = {
        "ngf": args.ngf,
        "n_blocks": args.n_blocks,
        "up_mode": args.g_up_mode,
        "residual": args.g_residual,
        "n_downsampling": args.g_downsampling,
        "noise_channels": args.g_noise_channels,
        "noise_at": args.g_noise_at,
        # auto: the trainer measures the range on the operator's real LR, as for any user (`jpeg_quality: auto`)
        **({"jpeg_quality": args.g_jpeg_quality} if args.g_jpeg_quality not in (0, "auto-median") else {}),
        **({"input_blur": args.g_input_blur} if args.g_input_blur else {}),
        **({"real_noise": True} if args.g_real_noise else {}),
    }
    base = {
        "seed": args.seed,
        "model": {
            "generator": {"name": "resnet", "args": generator_args},
            "discriminator": {
                "name": "patchgan",
                "args": {"ndf": args.ndf, "n_layers": 3, "high_pass": args.d_high_pass},
            },
            "sr": {"name": args.sr_net, "args": json.loads(args.sr_args)},
        },
        "data": {
            "kind": "folder",
            "hr_patch": args.hr_patch,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "steps_per_epoch": spe,
        },
        "train": {"log_every": 50, "image_every": 0, "val_every_epochs": 1000},
        "checkpoint": {"every_steps": 500, "keep": 1, "resume": "auto"},
        "wandb": {"mode": "disabled"},
        "loss": {
            "cycle_sr_lam": args.cycle_sr_lam,
            "cycle_sr_fine_cap": args.cycle_sr_fine_cap,
            "content_low_pass": args.content_low_pass,
        },
        "optim": {"sr_lr": args.sr_lr},
    }
    supervised = (
        {"n_epoch": sr_epochs - decay, "n_epoch_decay": decay},
        {"sr_pretrain_epoch": 1, "joint_epoch": 10**6},  # every epoch is SR pre-training
        sr_epochs * spe,
    )
    unpaired = (
        {"n_epoch": trans + sr_epochs - decay, "n_epoch_decay": decay},
        {"sr_pretrain_epoch": trans + 1, "joint_epoch": trans + pre + 1},
        (trans + sr_epochs) * spe,
    )

    if args.production:
        recipe = production_recipe()
        base["model"], base["loss"] = recipe["model"], recipe["loss"]
        base["optim"].update(recipe["optim"])
        base["train"]["batched_calls"] = recipe["train"].get("batched_calls", "auto")

    def run(run_id: str, out: Path, root: Path, hr_to_lr: str, schedule: tuple) -> Run:
        cfg = json.loads(json.dumps(base))
        cfg["data"].update({"root": str(root), "hr_to_lr": hr_to_lr})
        cfg.update({"output_dir": str(out), "max_steps": schedule[2], "stages": schedule[1]})
        cfg["optim"].update(schedule[0])
        return Run(run_id, cfg)

    runs = []
    if "bicubic-trained" in rows:
        out = run_dir(work, "bicubic-trained", "", production=args.production)
        runs.append(run("bicubic-trained", out, data / "clean", "bicubic", supervised))
    if "blind" in rows:
        runs.append(
            run(
                "blind",
                run_dir(work, "blind", "", production=args.production),
                data / "clean",
                "realesrgan",
                supervised,
            )
        )
    for op in operators:
        if "cyclesr" in rows:
            out = run_dir(work, "cyclesr", op, args.tag, args.production)
            runs.append(run(f"{op}/{out.name}", out, data / op, args.clean_lr, unpaired))
            if args.g_jpeg_quality == "auto-median":  # `cyclesr data jpeg-quality`'s median, learned from there
                quality = median_jpeg_quality(data / op)
                runs[-1].config["model"]["generator"]["args"].update({"jpeg_quality": quality} if quality else {})
            # a kept checkpoint every epoch: the joint stage's before/after, the SR net's PSNR over time
            runs[-1].config["checkpoint"].update({"every_steps": spe, "keep": 10**6})
            if args.time_to_quality:  # and a logged step every epoch: the training seconds of each checkpoint
                runs[-1].config["train"]["log_every"] = spe
        if "oracle" in rows:
            runs.append(
                run(f"{op}/oracle", run_dir(work, "oracle", op, production=args.production), data / op, op, supervised)
            )
        if "realsr" in rows:  # supervised on the degradation fitted to the operator's real LR, without pairs
            fitted = f"fitted:{fitted_degradation(data / op, args.fit_steps).resolve()}"
            out = run_dir(work, "realsr", op, production=args.production)
            runs.append(run(f"{op}/realsr", out, data / op, fitted, supervised))
    return runs


def fitted_degradation(op_data: Path, steps: int) -> Path:
    """The operator's RealSR-style degradation, fitted on its HR and real-LR folders as `cyclesr data
    fit-degradation` does (one thread, seeded: the same file every time), kept beside them."""
    path = op_data / ("fitted.npz" if steps == FitSettings.steps else f"fitted-{steps}.npz")
    if not path.is_file():
        t0, threads = time.perf_counter(), torch.get_num_threads()
        torch.set_num_threads(1)
        hr = [load_rgb(p) for p in list_images(op_data / "hr")]
        real_lr = [load_rgb(p) for p in list_images(op_data / "real_lr")]
        fit = fit_degradation(hr, real_lr, SCALE, FitSettings(steps=steps), log=None)
        save_fit(fit, path)
        torch.set_num_threads(threads)
        print(
            f"fitted the degradation of {op_data} in {time.perf_counter() - t0:.0f}s: {describe_fit(fit)}", flush=True
        )
    return path


def median_jpeg_quality(op_data: Path) -> int:
    """The real LR's median JPEG quality (`cyclesr_dist.data.jpeg_estimate`, cached beside them); 0 (stage off) if
    none is JPEG-compressed."""
    cache = op_data / "jpeg_quality.json"
    if not cache.is_file():
        cache.write_text(json.dumps(quality_summary(estimate_folder(op_data / "real_lr"))))
    summary = json.loads(cache.read_text())
    if summary is None:
        return 0
    return summary["median"]
