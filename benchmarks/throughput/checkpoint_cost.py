"""What a periodic checkpoint save costs the training: the trainer's own save (`CheckpointManager.save` over the
backend's group states and the per-rank objects: step, image pools, RNG) at a config's networks, timed, and its
share of the training time between two saves (`checkpoint.every_steps` steps).

The save runs on the training thread, so every rank waits for it; an asynchronous save would hide the writing,
fsync and hashing but not the snapshot (a host copy of the weights, optimizer state and pools), timed apart.
The size of what is saved does not depend on the crop or the batch, so the CPU's shrunk batch measures the real
cost: one step runs at the config's own LR crop, then the image pools are filled to `loss.pool_size` images of
that size, as they are after the first steps of a real run. The share is taken against `--checkpoint-step-ms`
when given (a step measured on the target GPU), else the `trainer` (or `ours`) joint step timed in this run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_map

from cyclesr_dist.checkpoint_format import read_checkpoint
from cyclesr_dist.cyclesr import Stage
from cyclesr_dist.engine.checkpoint import CheckpointManager, RNGState
from cyclesr_dist.testing import random_batch

from .setups import Setup, sync
from .trainer_step import StepOnlyTrainer, step_only_trainer


def _host_copy(value: Any) -> Any:
    """What an asynchronous save must do before training goes on: a private host copy of every tensor."""
    return value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value


def _trainer_after_one_step(setup: Setup) -> StepOnlyTrainer:
    c = setup.config
    trainer = step_only_trainer(setup, Stage.JOINT, setup.base_bf16)  # every optimizer steps in the joint stage
    trainer.logger = None  # no tracker: the checkpoint's meta records no run id
    # One step at the config's own LR crop (the pools must hold one size): Adam's moments exist from then on.
    lr = c.data.hr_patch // c.data.scale
    trainer.train_step([trainer._to_device(random_batch(setup.batch_size, lr, c.data.scale))])
    joint = trainer.model.joint
    for pool in (joint.pool_clean, joint.pool_real):
        pool.query(torch.rand(c.loss.pool_size, 3, lr, lr, device=setup.device) * 2 - 1)
    return trainer


def checkpoint_cost(setup: Setup, saves: int, root: Path | None) -> dict[str, Any]:
    """Median seconds of a full save and of its snapshot part, and the bytes written, over `saves` saves."""
    trainer = _trainer_after_one_step(setup)
    per_rank = {"trainer": trainer, "model": trainer.model, "rng": RNGState()}
    work = Path(tempfile.mkdtemp(prefix="ckpt-cost-", dir=root))
    manager = CheckpointManager(work, keep=2, every_steps=setup.config.checkpoint.every_steps)
    total, snapshot = [], []
    try:
        for i in range(saves):
            sync(setup.device)
            tic = time.perf_counter()
            states = [trainer.backend.group_states(), {k: obj.state_dict() for k, obj in per_rank.items()}]
            tree_map(_host_copy, states)
            snapshot.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            saved = manager.save(trainer.step + i, trainer._meta(), trainer.backend, per_rank)
            total.append(time.perf_counter() - tic)
        size = sum(entry["size"] for entry in read_checkpoint(saved).meta["files"].values())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "save_s": statistics.median(total),
        "save_s_range": [min(total), max(total)],
        "snapshot_s": statistics.median(snapshot),
        "bytes": size,
        "every_steps": setup.config.checkpoint.every_steps,
        "dir": str(root or tempfile.gettempdir()),
    }


def checkpoint_section(setup: Setup, rows: dict[str, list[dict]], args: argparse.Namespace) -> dict[str, Any]:
    cost = checkpoint_cost(setup, args.checkpoint_saves, args.checkpoint_dir)
    joint = {r["variant"]: r["median_s"] for r in rows.get("joint", [])}
    step_s = args.checkpoint_step_ms / 1e3 if args.checkpoint_step_ms else joint.get("trainer", joint.get("ours"))
    source = "--checkpoint-step-ms" if args.checkpoint_step_ms else "this run's joint step"
    print(
        f"checkpoint save ({setup.name} config, {cost['bytes'] / 1e6:.1f} MB into {cost['dir']}): "
        f"{cost['save_s']:.2f} s (min-max {cost['save_s_range'][0]:.2f}-{cost['save_s_range'][1]:.2f}, "
        f"{args.checkpoint_saves} saves), of which the snapshot {cost['snapshot_s']:.3f} s",
        flush=True,
    )
    if step_s:
        interval = cost["every_steps"] * step_s
        cost |= {"step_s": step_s, "step_source": source, "share": cost["save_s"] / (interval + cost["save_s"])}
        print(
            f"  every {cost['every_steps']} steps of {step_s * 1e3:.0f} ms ({source}): the save stalls "
            f"{100 * cost['share']:.2f} % of the training time",
            flush=True,
        )
    return cost
