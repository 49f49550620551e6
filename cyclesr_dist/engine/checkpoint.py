"""Checkpoint manager: sharded, atomic, with retention, auto-resume and the save interval.

The layout is `checkpoint_format`'s. A save writes into `.partial-step-00001234/`: the backend's group states
(group i written by rank i mod world size, so writing is sharded and any world size can read every group), each
rank's stateful objects (`rank-<r>.pt`: data-stream position, image pools, RNG, step), whatever the backend saves
collectively (DeepSpeed's engine shards); then all ranks finish (barrier), rank 0 writes meta.json, renames the
directory into place and rewrites `latest` (temp file + os.replace). A kill at any moment leaves every complete
step directory intact and `latest` naming a complete one or missing (then resume finds the newest by scanning).

meta.json lists every file with its size and SHA-256 (rank 0 hashes the directory before the rename: one read of
what was just written). `resolve("auto")` verifies the preferred checkpoint and falls back to older ones; a damaged
one is renamed `.damaged-step-...` (kept for inspection, never resumed from, not counted by retention) and
reported. Retention keeps the `keep` newest complete checkpoints and never the one just saved.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..checkpoint_format import (
    LATEST,
    META,
    Checkpoint,
    DamagedCheckpoint,
    candidates,
    complete_checkpoints,
    file_table,
    group_file,
    latest_checkpoint,
    load_file,
    rank_file,
    read_checkpoint,
    step_dir_name,
    verify,
)
from ..errors import UserError
from .backends.base import Backend


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RNGState:
    """Python, NumPy and torch (CPU and CUDA) global RNG states of this process, as a stateful object."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


class CheckpointManager:
    def __init__(
        self,
        root: str | Path,
        *,
        keep: int,
        every_steps: int = 0,
        rank: int = 0,
        world_size: int = 1,
        barrier: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = Path(root)
        self.keep, self.every_steps = keep, every_steps
        self.rank, self.world_size = rank, world_size
        self.barrier = barrier

    def due(self, step: int) -> bool:
        """A periodic save is due after `step` steps."""
        return self.every_steps > 0 and step % self.every_steps == 0

    # ------------------------------------------------------------------ finding
    def latest(self) -> Checkpoint | None:
        return latest_checkpoint(self.root)

    def resolve(self, resume: str) -> tuple[Checkpoint | None, list[str]]:
        """(checkpoint to resume from, what was wrong with the ones skipped). `auto`: the preferred intact
        checkpoint or None; `none`: None; else that checkpoint directory, which must be intact. Collective."""
        if resume == "none":
            return None, []
        if resume != "auto":
            if not (Path(resume) / META).is_file():
                raise UserError(
                    f"checkpoint.resume={resume!r} is not a complete checkpoint (no {META}); give a "
                    "checkpoints/step-XXXXXXXX folder, or auto / none"
                )
            checkpoint = read_checkpoint(resume)
            problems = verify(checkpoint)
            if problems:
                raise DamagedCheckpoint(f"checkpoint.resume={resume}: {'; '.join(problems)}")
            return checkpoint, []
        found, damaged = None, []
        for path in candidates(self.root):
            try:
                checkpoint = read_checkpoint(path)
                problems = verify(checkpoint)
            except DamagedCheckpoint as exn:
                problems = [str(exn)]
            if not problems:
                found = checkpoint
                break
            damaged.append((path, problems))
        self.barrier()  # every rank has read what it needed before rank 0 moves damaged ones aside
        messages = []
        for path, problems in damaged:
            aside = path.with_name(f".damaged-{path.name}")
            if self.rank == 0:
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(path, aside)
            messages.append(f"checkpoint {path.name} is damaged ({'; '.join(problems)}): moved to {aside.name}")
        self.barrier()
        return found, messages

    # ------------------------------------------------------------------ saving and loading
    def save(self, step: int, meta: dict[str, Any], backend: Backend, per_rank: dict[str, Stateful]) -> Path:
        """Collective: every rank calls it with the same `step`."""
        name = step_dir_name(step)
        partial = self.root / f".partial-{name}"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # left by a save that was killed
            partial.mkdir()
        self.barrier()
        groups = backend.group_states()
        for index, (group, state) in enumerate(sorted(groups.items())):
            if index % self.world_size == self.rank:
                _save(state, partial / group_file(group))
        _save({key: obj.state_dict() for key, obj in per_rank.items()}, partial / rank_file(self.rank))
        backend.save_sharded(partial)
        self.barrier()
        final = self.root / name
        if self.rank == 0:
            meta = {**meta, "step": step, "world_size": self.world_size, "groups": sorted(groups)}
            meta["files"] = file_table(partial)
            atomic_write_text(partial / META, json.dumps(meta, indent=2))
            if final.exists():  # the same step saved again (e.g. a rerun): replace it
                shutil.rmtree(final)
            os.replace(partial, final)
            _fsync_dir(self.root)
            atomic_write_text(self.root / LATEST, name + "\n")
            self._prune(keep=final)
        self.barrier()
        return final

    def load(self, checkpoint: Checkpoint, backend: Backend, per_rank: dict[str, Stateful]) -> bool:
        """Collective. Restores the backend, then this rank's objects; False when the checkpoint was written by fewer
        ranks than this one's index (its objects keep their fresh state)."""
        backend.load(checkpoint)
        path = checkpoint.path / rank_file(self.rank)
        if not path.is_file():
            return False
        state = load_file(path)
        for key, obj in per_rank.items():
            if key in state:
                obj.load_state_dict(state[key])
        return True

    def _prune(self, keep: Path) -> None:
        """Keep `keep` (just saved) and the newest `self.keep - 1` others; a run resumed from an older checkpoint
        may have newer step numbers on disk, from the timeline it abandoned."""
        others = [p for p in complete_checkpoints(self.root) if p != keep]
        for old in others[: max(0, len(others) - (self.keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
