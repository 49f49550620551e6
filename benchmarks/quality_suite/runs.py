"""Training the quality benchmark's models as CLI subprocesses (several at once with --jobs) and measuring them:
SR on each operator's test set, and how close CycleSR's translation G comes to the operator it imitates."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import yaml

from cyclesr_dist.atomic import atomic_write_text
from cyclesr_dist.checkpoint_format import META, find_checkpoint, network_state
from cyclesr_dist.data.images import clean_downscale, clean_lr_kind, model_to_uint8, uint8_to_model
from cyclesr_dist.errors import UserError
from cyclesr_dist.metrics import translation_metrics
from cyclesr_dist.models import build_network
from cyclesr_dist.serve.evaluate import evaluate_pairs
from cyclesr_dist.serve.export import in_data_range, load_sr, recorded_range

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    run_id: str  # "bicubic-trained", "blind", "<operator>/cyclesr", "<operator>/oracle"
    config: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def log_name(self) -> str:
        return self.run_id.replace("/", "_")


def checkpoint_step(run_dir: Path) -> int:
    """Step of the run's newest complete checkpoint, 0 if none."""
    try:
        return find_checkpoint(run_dir).step
    except UserError:  # none yet
        return 0


def load_network(run_dir: Path, network: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One network of the run's newest checkpoint, in eval mode without gradients, and its checkpoint entry."""
    entry, state = network_state(find_checkpoint(run_dir), network)
    net = build_network(entry["registry"], entry["name"], entry["args"])
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), entry


def load_generator(run_dir: Path) -> torch.nn.Module:
    """CycleSR's G (gen_clean_to_real), taking and giving images in [-1, 1] whatever range it trained in."""
    net, entry = load_network(run_dir, "gen_clean_to_real")
    return in_data_range(net, recorded_range(entry))


# ----------------------------------------------------------------------------------------------------- training


def _launch(run: Run, work: Path, overrides: list[str], threads: int) -> tuple[subprocess.Popen, IO[str]]:
    cfg_path = work / "configs" / f"{run.log_name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(run.config, sort_keys=False))
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", str(cfg_path), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    log = open(work / "logs" / f"{run.log_name}.log", "a")  # closed by train_runs when the process ends
    print(f"[{run.run_id}] training ({threads} threads): {' '.join(cmd)}", flush=True)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def read_wall(run_dir: Path) -> float | None:
    """Training wall time recorded for a run (summed over invocations), None if never recorded."""
    wall_file = run_dir / "wall.json"
    return json.loads(wall_file.read_text())["wall_s"] if wall_file.is_file() else None


def _add_wall(run: Run, seconds: float, threads: int, jobs: int) -> dict[str, Any]:
    wall_file = run.output_dir / "wall.json"
    before = json.loads(wall_file.read_text())["wall_s"] if wall_file.is_file() else 0.0
    wall = {"wall_s": before + seconds, "threads": threads, "jobs": jobs}
    wall_file.write_text(json.dumps(wall))
    return wall


def train_runs(runs: list[Run], work: Path, overrides: list[str], jobs: int) -> dict[str, dict[str, Any]]:
    """Train (or resume) every run, `jobs` at a time, each with OMP_NUM_THREADS = max(1, cores // jobs).

    Returns {run_id: {"wall_s", "threads", "jobs"}}: the run's training wall time summed over the invocations
    that trained it (kept in <run>/wall.json, so a finished run re-used later keeps its time). Exits with the
    failing runs' log tails if any failed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // jobs)
    walls: dict[str, dict[str, Any]] = {}
    pending = []
    for run in runs:
        wall_file = run.output_dir / "wall.json"
        if checkpoint_step(run.output_dir) >= run.config["max_steps"] and wall_file.is_file():
            walls[run.run_id] = json.loads(wall_file.read_text())
            print(f"[{run.run_id}] already trained ({walls[run.run_id]['wall_s']:.0f}s)", flush=True)
        else:
            pending.append(run)
    active: dict[str, tuple[Run, subprocess.Popen, IO[str], float]] = {}
    failed: list[str] = []
    try:
        while pending or active:
            while pending and len(active) < jobs:
                run = pending.pop(0)
                active[run.run_id] = (run, *_launch(run, work, overrides, threads), time.perf_counter())
            time.sleep(0.5)
            for run_id, (run, proc, log, t0) in list(active.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del active[run_id]
                if proc.returncode != 0:
                    failed.append(run_id)
                    print(f"[{run_id}] FAILED (exit {proc.returncode})", flush=True)
                    continue
                walls[run_id] = _add_wall(run, time.perf_counter() - t0, threads, jobs)
                print(f"[{run_id}] done in {time.perf_counter() - t0:.0f}s", flush=True)
    finally:  # interrupted: stop the runs still going (they resume from their last checkpoint next time, and the
        # time spent so far stays counted: a run stopped and resumed reports the sum of its invocations)
        for run, proc, log, t0 in active.values():
            proc.terminate()
            proc.wait()
            log.close()
            _add_wall(run, time.perf_counter() - t0, threads, jobs)
    if failed:
        tails = []
        for run_id in failed:
            log_path = work / "logs" / f"{run_id.replace('/', '_')}.log"
            tails.append(f"--- {log_path} (last lines)\n" + "\n".join(log_path.read_text().splitlines()[-15:]))
        raise SystemExit("training failed: " + ", ".join(failed) + "\n" + "\n".join(tails))
    return walls


# --------------------------------------------------------------------------------------------------- evaluation

# Scores already computed, so that a report re-run, or a variant's run beside the shared baselines, scores each
# checkpoint on each test set once (scoring with the half-pixel shift search takes minutes per operator on 2 cores).
_EVAL_CACHE: dict[str, Path | None] = {"path": None}


def use_eval_cache(path: Path | None) -> None:
    """Keep scores in `path` (JSON), keyed by checkpoint (its step folder and the time its meta.json was written),
    test set (a digest of its pixels) and scoring parameters; None: no cache."""
    _EVAL_CACHE["path"] = path


def _pairs_digest(pairs: list) -> str:
    digest = hashlib.sha1()
    for name, lr, hr in pairs:
        digest.update(name.encode() + lr.tobytes() + str(hr.shape).encode())
        digest.update(hr[:: max(1, hr.shape[0] // 64)].tobytes())  # rows of the HR: a different crop differs
    return digest.hexdigest()


def memo(kind: str, checkpoint: Path, pairs: list, params: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """`compute()`, or its stored result for the same checkpoint, test set and parameters."""
    path = _EVAL_CACHE["path"]
    if path is None:
        return compute()
    found = find_checkpoint(checkpoint)
    stamp = (found.path / META).stat().st_mtime_ns
    key = json.dumps([kind, str(found.path.resolve()), stamp, _pairs_digest(pairs), params], sort_keys=True)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if key in stored:
        return stored[key]
    value = compute()
    stored = json.loads(path.read_text()) if path.is_file() else {}  # another process may have added some
    stored[key] = value
    atomic_write_text(path, json.dumps(stored))
    return value


def _bicubic_only(res: dict[str, Any]) -> dict[str, Any]:
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k[len("bicubic_") :]: v for k, v in d.items() if k.startswith("bicubic_")}

    images = [{"name": im["name"], **strip(im)} for im in res["images"]]
    return {"mean": strip(res["mean"]), "images": images, "max_shift": res["max_shift"], "subpixel": res["subpixel"]}


def evaluate_rows(
    row_dirs: dict[str, Path], pairs: list, device: str, tile: int, max_shift: int, subpixel: int = 1
) -> dict[str, dict[str, Any]]:
    """{row: evaluate_pairs result} for each trained row's newest checkpoint, plus the bicubic row. `max_shift`:
    also the best PSNR over shifts of ±max_shift HR px on a 1/`subpixel` px grid (a sampling grid offset is not
    identifiable from unpaired data, see BENCHMARKS.md)."""
    results: dict[str, dict[str, Any]] = {}
    for row, run_dir in row_dirs.items():
        res = score_sr(run_dir, pairs, device, tile, max_shift, subpixel)
        results.setdefault("bicubic", _bicubic_only(res))
        results[row] = res
    return results


def score_sr(checkpoint: Path, pairs: list, device: str, tile: int, max_shift: int, subpixel: int) -> dict[str, Any]:
    """`evaluate_pairs` of the SR net of `checkpoint` (a run folder: its newest checkpoint; or a step folder)."""

    def compute() -> dict[str, Any]:
        net = load_sr(checkpoint, device=device)
        return evaluate_pairs(
            net, pairs, scale=net_scale(pairs), device=device, tile=tile or None, max_shift=max_shift, subpixel=subpixel
        )

    return memo("sr", checkpoint, pairs, {"tile": tile, "max_shift": max_shift, "subpixel": subpixel}, compute)


def net_scale(pairs: list) -> int:
    _, lr, hr = pairs[0]
    return hr.shape[0] // lr.shape[0]


@torch.no_grad()
def translation_fidelity(run_dir: Path, pairs: list, device: str, checkpoint: Path | None = None) -> dict[str, Any]:
    """`metrics.translation_metrics` of G(clean LR of the test HR) and of that clean LR itself against the test's
    true LR, per scene and averaged (8-bit images, as a saved LR would be; G's noise seeded). The clean LR is the
    run's own (`images.clean_lr_kind` of its config.yaml's `data.hr_to_lr`, as validation makes it), named in the
    keys: "G(bicubic LR)", "bicubic LR". G is the newest checkpoint's, or that of `checkpoint` (a step folder)."""
    return memo(
        "translation", checkpoint or run_dir, pairs, {}, lambda: _translation(run_dir, pairs, device, checkpoint)
    )


@torch.no_grad()
def _translation(run_dir: Path, pairs: list, device: str, checkpoint: Path | None) -> dict[str, Any]:
    torch.manual_seed(0)
    gen = load_generator(checkpoint or run_dir).to(device)
    kind = clean_lr_kind(yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["hr_to_lr"])
    sources = (f"G({kind} LR)", f"{kind} LR")
    per_scene = []
    for name, lr, hr in pairs:
        scale = hr.shape[0] // lr.shape[0]
        clean = clean_downscale(uint8_to_model(hr).unsqueeze(0), scale, kind)
        fake = gen(clean.to(device)).clamp(-1, 1).cpu()
        as_saved = [uint8_to_model(model_to_uint8(t[0])).unsqueeze(0) for t in (fake, clean)]
        true = uint8_to_model(lr).unsqueeze(0)
        per_scene.append(
            {
                "name": name,
                sources[0]: translation_metrics(as_saved[0], true),
                sources[1]: translation_metrics(as_saved[1], true),
            }
        )
    mean = {src: {k: float(np.mean([s[src][k] for s in per_scene])) for k in per_scene[0][src]} for src in sources}
    return {"mean": mean, "images": per_scene}
