"""A stand-in for ``train.py`` that follows the trainer's launch contract, for launcher tests.

Same command line (``--config FILE [key=value ...]``), same in-process API (``load_config(path, overrides)``,
``train(config) -> int``), same on-disk layout and preemption behaviour as the real trainer, but it trains
nothing: a step is a short sleep and an all-reduce. It lets the Slurm / Submitit plumbing be tested in seconds.

- Distributed when ``WORLD_SIZE`` > 1 (gloo, ``env://``: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as set by
  ``accelerate launch``, torchrun or ``TorchDistributedEnvironment().export()``.
- ``output_dir/checkpoints/step-XXXXXXXX/`` holds one file per rank (a "sharded" save, written collectively into a
  temporary folder that rank 0 renames), ``output_dir/checkpoints/latest`` names the newest complete one.
- One ``step=N`` line per step on stdout and one JSON line in ``output_dir/train_log.jsonl`` (rank 0).
- SIGUSR1/SIGTERM set a flag; at the next step boundary the ranks agree (all-reduce MAX), save, exit 75.
- ``checkpoint.resume=auto`` resumes from ``latest`` when there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cyclesr_dist.errors import PREEMPTED as EXIT_PREEMPTED

DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/fake",
    "max_steps": 20,
    "checkpoint": {"every_steps": 5, "resume": "never"},
    # stop_at: rank 0 acts as if it got a signal after that step (0: never).
    "fake": {"step_s": 0.2, "startup_s": 0.0, "stop_at": 0},
}


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _merge(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in other.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    cfg = _merge(DEFAULTS, yaml.safe_load(Path(path).read_text()) or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        _set(cfg, key, yaml.safe_load(raw))
    return cfg


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        print(f"[fake_train] rank {os.environ.get('RANK', '0')} got {signal.Signals(signum).name}", flush=True)
        self.requested = True


def _latest(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / "latest"
    if not pointer.exists():
        return None
    step_dir = ckpt_root / pointer.read_text().strip()
    return step_dir if (step_dir / "COMPLETE").exists() else None


def _save(dist: Any, rank: int, world: int, ckpt_root: Path, step: int) -> None:
    name = f"step-{step:08d}"
    tmp = ckpt_root / f".tmp-{name}"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"rank-{rank}.json").write_text(json.dumps({"step": step, "rank": rank, "world": world}))
    if dist is not None:
        dist.barrier()
    if rank == 0:
        (tmp / "COMPLETE").write_text("ok\n")
        final = ckpt_root / name
        if final.exists():
            import shutil

            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer_tmp = ckpt_root / ".latest.tmp"
        pointer_tmp.write_text(name + "\n")
        os.replace(pointer_tmp, ckpt_root / "latest")
    if dist is not None:
        dist.barrier()


def train(cfg: dict[str, Any]) -> int:
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dist = None
    try:
        time.sleep(float(cfg["fake"]["startup_s"]))
        if world > 1:
            import torch
            import torch.distributed as dist

            dist.init_process_group("gloo")
        out = Path(cfg["output_dir"])
        ckpt_root = out / "checkpoints"
        if rank == 0:
            ckpt_root.mkdir(parents=True, exist_ok=True)
        if dist is not None:
            dist.barrier()

        step = 0
        if str(cfg["checkpoint"]["resume"]) == "auto":
            found = _latest(ckpt_root)
            if found is not None:
                step = json.loads((found / f"rank-{rank}.json").read_text())["step"]
                print(f"[fake_train] rank {rank} resumed from {found.name} (step {step})", flush=True)
        max_steps = int(cfg["max_steps"])
        every = int(cfg["checkpoint"]["every_steps"])
        host = socket.gethostname()
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        while step < max_steps:
            time.sleep(float(cfg["fake"]["step_s"]))
            step += 1
            if rank == 0:
                print(f"step={step} world={world} host={host}", flush=True)
                with open(out / "train_log.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, "world": world, "restart": restart, "pid": os.getpid()}) + "\n")
            if rank == 0 and step == int(cfg["fake"]["stop_at"]):
                stop.requested = True
            flag = 1.0 if stop.requested else 0.0
            if dist is not None:
                t = torch.tensor([flag])
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                flag = float(t.item())
            if flag or step % every == 0 or step == max_steps:
                _save(dist, rank, world, ckpt_root, step)
            if flag and step < max_steps:
                print(f"[fake_train] rank {rank} preempted: saved step {step}, exiting {EXIT_PREEMPTED}", flush=True)
                return EXIT_PREEMPTED
        print(f"[fake_train] rank {rank} finished at step {step}", flush=True)
        return 0
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    return train(load_config(args.config, args.overrides))


if __name__ == "__main__":
    sys.exit(main())
