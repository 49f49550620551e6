"""Rank-0 side effects: W&B through Accelerate's tracker, a JSONL log, stdout lines and, on a terminal, a progress
bar (step/total, stage, samples/s, ETA) above them.

W&B mode `auto` is online when WANDB_API_KEY is set and offline otherwise. The key is read by wandb from the
environment only; it never enters the config, the logs or a checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

from ..atomic import atomic_write_text
from ..config import WandbConfig


def wandb_mode(cfg: WandbConfig) -> str:
    if cfg.mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.mode


def _truncate_after(path: Path, step: int) -> None:
    """Keep the rows of steps <= `step` (and no half-written last line), so the log stays ordered and every step
    appears once across restarts."""
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if int(row.get("step", 0)) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class RunLogger:
    """Every call is a no-op except on the main process."""

    def __init__(
        self,
        accelerator: Accelerator,
        output_dir: Path,
        cfg: WandbConfig,
        config_dict: dict[str, Any],
        run_id: str | None,
        resumed_at: int = 0,
    ) -> None:
        """`resumed_at`: the step training continues from; log rows written after it by the interrupted run (the
        steps since its last checkpoint, which are about to be trained again) are dropped."""
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        self.mode = wandb_mode(cfg)
        self.run_id = run_id
        self._wandb_run = None
        self._jsonl = None
        self._bar = None
        if not self.is_main:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        log_path = output_dir / "train_log.jsonl"
        if log_path.is_file():
            _truncate_after(log_path, resumed_at)
        self._jsonl = open(log_path, "a", buffering=1)
        if self.mode != "disabled":
            self.run_id = run_id or secrets.token_hex(4)
            init_kwargs = {"id": self.run_id, "resume": "allow", "mode": self.mode, "dir": str(output_dir)}
            if cfg.entity:
                init_kwargs["entity"] = cfg.entity
            if cfg.name:
                init_kwargs["name"] = cfg.name
            accelerator.init_trackers(cfg.project, config=config_dict, init_kwargs={"wandb": init_kwargs})
            self._wandb_run = accelerator.get_tracker("wandb", unwrap=True)

    def log(self, values: dict[str, float], step: int) -> None:
        if not self.is_main:
            return
        if self._wandb_run is not None:
            self.accelerator.log(values, step=step)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        self.info(f"step={step} {shown}")
        if self._bar is not None:
            self._bar.set_postfix_str(
                " ".join(f"{k}={values[k]:.3g}" for k in ("samples_per_s", "loss/SR") if k in values)
            )

    def start_progress(self, total: int, done: int) -> None:
        """A progress bar when stdout is a terminal (plain log lines otherwise, e.g. in a Slurm log file)."""
        if self.is_main and sys.stdout.isatty():
            import shutil

            from tqdm import tqdm

            # A pseudo-terminal without a window size reports 0×0, for which tqdm draws nothing: use 100×24 then.
            size = shutil.get_terminal_size((100, 24))
            width, height = size.columns or 100, size.lines or 24
            self._bar = tqdm(total=total, initial=done, unit="step", ncols=width, nrows=height, file=sys.stdout)

    def advance(self, stage: str) -> None:
        if self._bar is not None:
            self._bar.set_description(stage, refresh=False)
            self._bar.update(1)

    def log_images(self, grids: dict[str, np.ndarray], step: int) -> None:
        if not self.is_main or self._wandb_run is None:
            return
        import wandb

        self._wandb_run.log({k: wandb.Image(v, caption=k) for k, v in grids.items()}, step=step)

    def info(self, message: str) -> None:
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, file=sys.stdout, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.is_main:
            if self._wandb_run is not None:
                self.accelerator.end_training()
            if self._jsonl:
                self._jsonl.close()
