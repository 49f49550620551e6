"""Unpaired-SR quality benchmark on real photos: bicubic vs supervised-on-bicubic vs CycleSR vs a paired oracle.

Data: the 12 nature photos of Debian's `mate-backgrounds` package (1280x1024 .. 2560x1920), fetched with
`apt-get download mate-backgrounds` and unpacked with `dpkg -x` into a cache folder. They are split by *scene*:

  HR domain   Blinds, FreshFlower, GreenMeadow, TwoWings, Storm   clean photos (HR crops; clean LR = bicubic ×1/4)
  real-LR     Aqua, Garden, RainDrops, Wood                       degraded by `degrade_real` (2 draws each), unpaired
  test        Dune, LadyBird, YellowFlower                        centre crop (≤ --test-crop) and its degraded ×1/4

The degradation (`cyclesr_dist.data.degrade.degrade_real`: anisotropic Gaussian blur, ×4 decimation, Gaussian
noise, JPEG) is never shown to a model as (LR, HR) pairs, except to the oracle.

Models, all the same SR network (`--sr-net`, `--sr-args`), same seed, batch, patch, optimizer (the trainer's SR
group: Adam, sr_lr, betas, sr_lam·MSE, grad clip) and the same number of SR-network updates with the same
learning-rate schedule:
  bicubic            no training
  supervised-bicubic the trainer with every epoch in the SR pre-training stage: SR on (bicubic LR, HR)
  cyclesr            the trainer, unpaired: translation-only epochs (the SR net is not updated), then SR
                     pre-training, then joint; the SR budget counts only the steps that update the SR net
  oracle-paired      as supervised-bicubic, but the LR of each HR crop is its true degraded version
                     (`degrade_real` of the HR photo, 4 draws per photo, aligned crops)
Each model is trained by `cyclesr_dist.engine.trainer` in a subprocess (resumable: re-running continues from the
newest checkpoint) and evaluated with `cyclesr_dist.evaluate.evaluate_pairs` (PSNR/SSIM, RGB and Y, shave 4).

CycleSR's networks default to the options that made it work here (BENCHMARKS.md, "Quality"), none of them in the
reference: generators with an identity skip, at full LR resolution (`--g-downsampling 0`), with per-pixel noise
fed to their last conv (`--g-noise-channels 3 --g-noise-at tail`); discriminators that see only the fine band
x − blur_σ(x) (`--d-high-pass 1`); the SR net with a bicubic skip. `--set KEY=VALUE` passes any trainer override.

    python benchmarks/quality.py --work runs/quality            # the small budget (CPU: ~15 min on 2 cores)
    python benchmarks/quality.py --work /tmp/q --quick          # smoke test (minutes; numbers meaningless)

Running two of these side by side on one machine: give each `OMP_NUM_THREADS=1` (or half the cores); oversubscribed
OpenMP threads made joint steps up to 20× slower here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from cyclesr_dist.data.degrade import degrade_real  # noqa: E402
from cyclesr_dist.data.images import load_rgb, save_rgb, uint8_to_model  # noqa: E402

SCALE = 4
HR_SCENES = ["Blinds", "FreshFlower", "GreenMeadow", "TwoWings", "Storm"]
REAL_LR_SCENES = ["Aqua", "Garden", "RainDrops", "Wood"]
TEST_SCENES = ["Dune", "LadyBird", "YellowFlower"]
REAL_LR_DRAWS = 2  # degradations per real-LR photo
ORACLE_DRAWS = 4  # degradations per HR photo for the oracle's pairs
PHOTO_SUBDIR = "usr/share/backgrounds/mate/nature"
MODELS = ["bicubic", "supervised-bicubic", "cyclesr", "oracle-paired"]


# ------------------------------------------------------------------------------------------------------------ data


def fetch_photos(cache: Path, deb: str | None = None) -> Path:
    """The folder of the package's nature photos, downloading and unpacking the .deb into `cache` if needed."""
    photos = cache / "x" / PHOTO_SUBDIR
    if all((photos / f"{s}.jpg").is_file() for s in HR_SCENES + REAL_LR_SCENES + TEST_SCENES):
        return photos
    cache.mkdir(parents=True, exist_ok=True)
    if deb is None:
        debs = sorted(cache.glob("mate-backgrounds_*.deb"))
        if not debs:
            cmd = ["apt-get", "download", "mate-backgrounds"]
            if subprocess.run(cmd, cwd=cache).returncode != 0:
                subprocess.run(["apt-get", "update"], check=False)
                if subprocess.run(cmd, cwd=cache).returncode != 0:
                    sys.exit("could not `apt-get download mate-backgrounds`; download the .deb and pass --deb FILE")
            debs = sorted(cache.glob("mate-backgrounds_*.deb"))
        deb = str(debs[-1])
    subprocess.run(["dpkg", "-x", deb, str(cache / "x")], check=True)
    missing = [s for s in HR_SCENES + REAL_LR_SCENES + TEST_SCENES if not (photos / f"{s}.jpg").is_file()]
    if missing:
        sys.exit(f"{deb} lacks the photos {missing} under {PHOTO_SUBDIR}")
    return photos


def _crop_multiple(img: np.ndarray, multiple: int, max_side: int = 0) -> np.ndarray:
    """Centre crop to a multiple of `multiple` (and at most max_side x max_side when max_side > 0)."""
    h, w = img.shape[:2]
    th = (min(h, max_side) if max_side else h) // multiple * multiple
    tw = (min(w, max_side) if max_side else w) // multiple * multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return img[top : top + th, left : left + tw]


def build_data(photos: Path, data: Path, test_crop: int) -> dict:
    """Write data/{hr, real_lr, oracle_lr, test/{hr,lr}} once; every degradation has its own fixed seed."""
    manifest_path = data / "manifest.json"
    spec = {
        "hr": HR_SCENES,
        "real_lr": REAL_LR_SCENES,
        "test": TEST_SCENES,
        "test_crop": test_crop,
        "real_lr_draws": REAL_LR_DRAWS,
        "oracle_draws": ORACLE_DRAWS,
        "degradation": "degrade_real",
    }
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == spec:
        return spec
    if data.exists():
        shutil.rmtree(data)
    t0 = time.perf_counter()
    for i, scene in enumerate(HR_SCENES):
        hr = _crop_multiple(load_rgb(photos / f"{scene}.jpg"), SCALE)
        save_rgb(hr, data / "hr" / f"{scene}.png")
        for k in range(ORACLE_DRAWS):
            rng = np.random.default_rng([1, i, k])
            save_rgb(degrade_real(hr, rng, SCALE), data / "oracle_lr" / f"{scene}__{k}.png")
    for i, scene in enumerate(REAL_LR_SCENES):
        photo = _crop_multiple(load_rgb(photos / f"{scene}.jpg"), SCALE)
        for k in range(REAL_LR_DRAWS):
            rng = np.random.default_rng([2, i, k])
            save_rgb(degrade_real(photo, rng, SCALE), data / "real_lr" / f"{scene}__{k}.png")
    for i, scene in enumerate(TEST_SCENES):
        hr = _crop_multiple(load_rgb(photos / f"{scene}.jpg"), SCALE, test_crop)
        save_rgb(hr, data / "test" / "hr" / f"{scene}.png")
        save_rgb(degrade_real(hr, np.random.default_rng([3, i]), SCALE), data / "test" / "lr" / f"{scene}.png")
    manifest_path.write_text(json.dumps(spec, indent=2))
    print(f"built benchmark data in {data} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return spec


# ----------------------------------------------------------------------------------------------- oracle's loader


class PairedDegradedDataset(torch.utils.data.Dataset):
    """Aligned (true degraded LR, HR) crops: LR pixel (i, j) of `degrade_real` samples HR cell (4i.., 4j..)."""

    def __init__(self, data: Path, hr_patch: int, seed: int, rank: int) -> None:
        self.hr = {p.stem: load_rgb(p) for p in sorted((data / "hr").glob("*.png"))}
        self.pairs = [(p.stem.split("__")[0], load_rgb(p)) for p in sorted((data / "oracle_lr").glob("*.png"))]
        self.hr_patch, self.lr_patch = hr_patch, hr_patch // SCALE
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        scene, lr_img = self.pairs[int(rng.integers(len(self.pairs)))]
        hr_img = self.hr[scene]
        top = int(rng.integers(0, lr_img.shape[0] - self.lr_patch + 1))
        left = int(rng.integers(0, lr_img.shape[1] - self.lr_patch + 1))
        lr = lr_img[top : top + self.lr_patch, left : left + self.lr_patch]
        hr = hr_img[top * SCALE : top * SCALE + self.hr_patch, left * SCALE : left * SCALE + self.hr_patch]
        flip, rot = rng.random() < 0.5, int(rng.integers(0, 4))
        out = []
        for img in (lr, hr):
            img = img[:, ::-1] if flip else img
            out.append(uint8_to_model(np.ascontiguousarray(np.rot90(img, k=rot))))
        return {"hr": out[1], "clean_lr": out[0], "real_lr": out[0]}


def _train_oracle(config_path: str, overrides: list[str]) -> int:
    """Subprocess entry: the stock trainer with its loader swapped for the paired (degraded LR, HR) one."""
    from cyclesr_dist.config import load_config
    from cyclesr_dist.data.folder import IndexedLoader
    from cyclesr_dist.engine import trainer

    config = load_config(config_path, overrides)

    def build_loader(config, rank, world_size):  # noqa: ANN001 (same signature as trainer.build_loader)
        d = config.data
        dataset = PairedDegradedDataset(Path(d.root), d.hr_patch, config.seed, rank)
        return IndexedLoader(dataset, batch_size=d.batch_size // world_size, num_workers=d.num_workers)

    trainer.build_loader = build_loader
    return trainer.train(config)


# ----------------------------------------------------------------------------------------------------- training


def make_configs(args: argparse.Namespace, data: Path, work: Path) -> dict[str, dict]:
    """Trainer configs. Epoch e of a supervised run is epoch e + translation_epochs of the CycleSR run, so the SR
    network sees the same number of updates at the same learning rates in every run."""
    spe = args.steps_per_epoch
    trans, pre, joint, decay = args.translation_epochs, args.pretrain_epochs, args.joint_epochs, args.decay_epochs
    if decay > pre + joint:
        raise SystemExit("--decay-epochs must not exceed --pretrain-epochs + --joint-epochs")
    sr_epochs = pre + joint
    base = {
        "seed": args.seed,
        "model": {
            "generator": {
                "name": "resnet",
                "args": {
                    "ngf": args.ngf,
                    "n_blocks": args.n_blocks,
                    "up_mode": args.g_up_mode,
                    "residual": args.g_residual,
                    "n_downsampling": args.g_downsampling,
                    "noise_channels": args.g_noise_channels,
                    "noise_at": args.g_noise_at,
                },
            },
            "discriminator": {
                "name": "patchgan",
                "args": {"ndf": args.ndf, "n_layers": 3, "high_pass": args.d_high_pass},
            },
            "sr": {"name": args.sr_net, "args": json.loads(args.sr_args)},
        },
        "data": {
            "kind": "folder",
            "root": str(data),
            "hr_patch": args.hr_patch,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "steps_per_epoch": spe,
        },
        "train": {"log_every": 50, "image_every": 0, "val_every_epochs": 1000},
        "checkpoint": {"every_steps": 500, "keep": 1, "resume": "auto"},
        "wandb": {"mode": "disabled"},
        "loss": {"cycle_sr_lam": args.cycle_sr_lam},
    }

    def config(name: str, optim: dict, stages: dict, max_steps: int) -> dict:
        cfg = json.loads(json.dumps(base))
        cfg.update({"output_dir": str(work / name), "max_steps": max_steps, "optim": optim, "stages": stages})
        return cfg

    supervised_stages = {"sr_pretrain_epoch": 1, "joint_epoch": 10**6}  # every epoch is SR pre-training
    supervised_optim = {"n_epoch": sr_epochs - decay, "n_epoch_decay": decay}
    return {
        "cyclesr": config(
            "cyclesr",
            {"n_epoch": trans + sr_epochs - decay, "n_epoch_decay": decay},
            {"sr_pretrain_epoch": trans + 1, "joint_epoch": trans + pre + 1},
            (trans + sr_epochs) * spe,
        ),
        "supervised-bicubic": config("supervised-bicubic", supervised_optim, supervised_stages, sr_epochs * spe),
        "oracle-paired": config("oracle-paired", supervised_optim, supervised_stages, sr_epochs * spe),
    }


def train_model(name: str, cfg: dict, work: Path, overrides: list[str]) -> None:
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if name == "oracle-paired":
        cmd = [sys.executable, str(Path(__file__).resolve()), "_train-oracle", str(cfg_path), *overrides]
    else:
        cmd = [sys.executable, "-m", "cyclesr_dist.engine.trainer", "--config", str(cfg_path), *overrides]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    print(f"[{name}] training: {' '.join(cmd)}", flush=True)
    with open(work / f"{name}.log", "a") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"[{name}] training failed (exit {rc}); see {work / f'{name}.log'}")
    print(f"[{name}] done in {time.perf_counter() - t0:.0f}s", flush=True)


# --------------------------------------------------------------------------------------------------- evaluation


def test_pairs(data: Path):
    for scene in TEST_SCENES:
        yield scene, load_rgb(data / "test" / "lr" / f"{scene}.png"), load_rgb(data / "test" / "hr" / f"{scene}.png")


def evaluate_models(work: Path, data: Path, names: list[str], device: str, tile: int) -> dict[str, dict]:
    from cyclesr_dist.evaluate import evaluate_pairs
    from cyclesr_dist.inference import load_sr

    results: dict[str, dict] = {}
    for name in names:
        net = load_sr(work / name, device=device)  # newest checkpoint of the run
        t0 = time.perf_counter()
        res = evaluate_pairs(net, test_pairs(data), scale=SCALE, device=device, tile=tile or None)
        print(f"[{name}] evaluated in {time.perf_counter() - t0:.0f}s", flush=True)
        results[name] = res
        if "bicubic" not in results:
            results["bicubic"] = {
                "mean": {k[len("bicubic_") :]: v for k, v in res["mean"].items() if k.startswith("bicubic_")},
                "images": [
                    {"name": im["name"], **{k[len("bicubic_") :]: v for k, v in im.items() if k.startswith("bicubic_")}}
                    for im in res["images"]
                ],
            }
    return results


def format_results(results: dict[str, dict]) -> str:
    names = [m for m in MODELS if m in results]
    scenes = [im["name"] for im in results[names[0]]["images"]]
    head = f"{'model':<20}" + "".join(f"{s:>22}" for s in scenes) + f"{'mean':>22}"
    lines = [f"{'':<20}" + "".join(f"{'PSNR / SSIM (RGB)':>22}" for _ in range(len(scenes) + 1)), head]
    lines.append("-" * len(head))
    for n in names:
        cells = [f"{im['psnr_rgb']:>13.2f} / {im['ssim_rgb']:.4f}" for im in results[n]["images"]]
        m = results[n]["mean"]
        cells.append(f"{m['psnr_rgb']:>13.2f} / {m['ssim_rgb']:.4f}")
        lines.append(f"{n:<20}" + "".join(cells))
    lines.append("")
    lines.append(f"{'model':<20}{'PSNR-Y':>10}{'SSIM-Y':>10}   (mean over the test scenes)")
    for n in names:
        m = results[n]["mean"]
        lines.append(f"{n:<20}{m['psnr_y']:>10.2f}{m['ssim_y']:>10.4f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_train-oracle"]:
        return _train_oracle(argv[1], argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "quality"), help="runs, configs, logs, results")
    p.add_argument("--cache", default=str(REPO / "data" / "mate-backgrounds"), help="where the .deb is unpacked")
    p.add_argument("--deb", default=None, help="use this mate-backgrounds .deb instead of apt-get download")
    p.add_argument("--test-crop", type=int, default=1024, help="test HR = centre crop of at most this side")
    p.add_argument("--sr-net", default="vdsr_lr")
    p.add_argument(
        "--sr-args", default='{"nf": 32, "nb": 6, "bicubic_skip": true}', help="JSON constructor args of the SR net"
    )
    p.add_argument("--ngf", type=int, default=16, help="CycleSR generators' width")
    p.add_argument("--n-blocks", type=int, default=3, help="CycleSR generators' residual blocks")
    p.add_argument("--ndf", type=int, default=16, help="CycleSR discriminators' width")
    p.add_argument("--g-up-mode", default="transpose", help="generators' upsampling: transpose|pixelshuffle|resize")
    p.add_argument("--g-residual", action=argparse.BooleanOptionalAction, default=True, help="identity-skip generators")
    p.add_argument("--g-downsampling", type=int, default=0, help="generators' stride-2 stages (reference: 2)")
    p.add_argument("--g-noise-channels", type=int, default=3, help="noise channels fed to the generators")
    p.add_argument("--g-noise-at", default="tail", help="where the noise channels enter: input|tail")
    p.add_argument("--d-high-pass", type=float, default=1.0, help="discriminators see x - blur_σ(x); 0 = full band")
    p.add_argument("--cycle-sr-lam", type=float, default=1000.0, help="weight of the SR loss in CycleSR's G update")
    p.add_argument("--num-workers", type=int, default=1, help="data-loader workers per training run")
    p.add_argument("--hr-patch", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--translation-epochs", type=int, default=6, help="CycleSR epochs before the SR net trains")
    p.add_argument("--pretrain-epochs", type=int, default=4, help="CycleSR SR pre-training epochs")
    p.add_argument("--joint-epochs", type=int, default=16, help="CycleSR joint epochs")
    p.add_argument("--decay-epochs", type=int, default=8, help="final epochs with linearly decaying LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="for evaluation")
    p.add_argument("--tile", type=int, default=0, help="evaluation tile size (0 = whole image)")
    p.add_argument("--models", default="supervised-bicubic,cyclesr,oracle-paired", help="which to train")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trainer config override for every trained model (repeatable), e.g. loss.lambda_identity=0",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 1 epoch per stage of 5 steps, small tests")
    args = p.parse_args(argv)
    if args.quick:
        args.steps_per_epoch, args.translation_epochs, args.pretrain_epochs = 5, 1, 1
        args.joint_epochs, args.decay_epochs, args.test_crop = 1, 1, min(args.test_crop, 256)

    work, data = Path(args.work), Path(args.work) / "data"
    work.mkdir(parents=True, exist_ok=True)
    photos = fetch_photos(Path(args.cache), args.deb)
    build_data(photos, data, args.test_crop)
    configs = make_configs(args, data, work)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(configs))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(configs)}")
    for name in names:
        train_model(name, configs[name], work, args.overrides)
    results = evaluate_models(work, data, names, args.device, args.tile)
    sr_updates = (args.pretrain_epochs + args.joint_epochs) * args.steps_per_epoch
    summary = {
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
        "args": vars(args),
        "sr_net": args.sr_net,
        "sr_args": json.loads(args.sr_args),
        "sr_updates": sr_updates,
        "cyclesr_total_steps": (args.translation_epochs + args.pretrain_epochs + args.joint_epochs)
        * args.steps_per_epoch,
        "batch_size": args.batch_size,
        "hr_patch": args.hr_patch,
        "test_scenes": TEST_SCENES,
        "results": results,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=2))
    print()
    print(
        f"x{SCALE} on {len(TEST_SCENES)} held-out scenes (HR ≤ {args.test_crop}², shave {SCALE}); "
        f"{args.sr_net} {args.sr_args}, {sr_updates} SR updates per trained model, batch {args.batch_size}, "
        f"HR patch {args.hr_patch}"
    )
    print(format_results(results))
    print(f"\nwrote {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
