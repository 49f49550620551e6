"""Checkpoint manager: sharded, atomic, with retention and auto-resume.

Layout of one checkpoint, `<output_dir>/checkpoints/step-00001234/`:
  meta.json            step, world size, tracker run id, config (rank 0; written last before the rename)
  group-<G>.pt         weights of the networks of optimizer group G and G's optimizer state; groups are spread
                       over ranks (group i is written by rank i mod world size), so writing is sharded and any
                       world size can load every group
  rank-<r>.pt          per-rank state: data-stream position, image pools, RNG states
A save writes into `.partial-step-00001234/`, all ranks finish (barrier), rank 0 renames it into place and then
rewrites the `latest` pointer (temp file + os.replace). A kill at any moment leaves `latest` naming a complete
checkpoint. Everything is loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text

STEP_DIR = re.compile(r"^step-(\d{8})$")


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


def load_file(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    path: Path
    step: int
    meta: dict[str, Any]


class CheckpointManager:
    def __init__(
        self, root: str | Path, keep: int, rank: int, world_size: int, barrier: Callable[[], None] = lambda: None
    ) -> None:
        self.root = Path(root)
        self.keep = keep
        self.rank, self.world_size = rank, world_size
        self.barrier = barrier

    # ------------------------------------------------------------------ finding
    def complete_checkpoints(self) -> list[Checkpoint]:
        found = []
        if not self.root.is_dir():
            return found
        for entry in self.root.iterdir():
            match = STEP_DIR.match(entry.name)
            if match and (entry / "meta.json").is_file():
                found.append(Checkpoint(entry, int(match.group(1)), {}))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The checkpoint `latest` names if it is complete, else the newest complete one."""
        pointer = self.root / "latest"
        candidates = []
        if pointer.is_file():
            candidates.append(self.root / pointer.read_text().strip())
        complete = self.complete_checkpoints()
        candidates += [c.path for c in reversed(complete)]
        for path in candidates:
            if STEP_DIR.match(path.name) and (path / "meta.json").is_file():
                return read_checkpoint(path)
        return None

    def resolve(self, resume: str) -> Checkpoint | None:
        """`auto`: newest complete checkpoint or None; `none`: None; else a checkpoint directory."""
        if resume == "none":
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"checkpoint.resume={resume!r} is not a complete checkpoint (no meta.json)")
        return read_checkpoint(path)

    # ------------------------------------------------------------------ saving
    def save(
        self,
        step: int,
        meta: dict[str, Any],
        groups: dict[str, dict[str, Any]],
        rank_state: dict[str, Any],
        save_sharded: Callable[[Path], Any] | None = None,
    ) -> Path:
        """Collective: every rank calls it with the same `step`. `groups` maps group name -> state to write;
        `save_sharded(partial_dir)`, called on every rank, writes state the ranks save together (DeepSpeed)."""
        name = f"step-{step:08d}"
        partial = self.root / f".partial-{name}"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # left by a save that was killed
            partial.mkdir()
        self.barrier()
        for index, (group, state) in enumerate(sorted(groups.items())):
            if index % self.world_size == self.rank:
                _save(state, partial / f"group-{group}.pt")
        _save(rank_state, partial / f"rank-{self.rank}.pt")
        if save_sharded is not None:
            save_sharded(partial)
        self.barrier()
        final = self.root / name
        if self.rank == 0:
            meta = {**meta, "step": step, "world_size": self.world_size, "groups": sorted(groups)}
            atomic_write_text(partial / "meta.json", json.dumps(meta, indent=2))
            if final.exists():  # the same step saved again (e.g. a rerun): replace it
                shutil.rmtree(final)
            os.replace(partial, final)
            _fsync_dir(self.root)
            atomic_write_text(self.root / "latest", name + "\n")
            self._prune()
        self.barrier()
        return final

    def _prune(self) -> None:
        complete = self.complete_checkpoints()
        for old in complete[: max(0, len(complete) - self.keep)]:
            shutil.rmtree(old.path, ignore_errors=True)


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    return Checkpoint(path, int(meta["step"]), meta)


def load_group(checkpoint: Checkpoint, group: str) -> dict[str, Any]:
    return load_file(checkpoint.path / f"group-{group}.pt")


def load_rank_state(checkpoint: Checkpoint, rank: int) -> dict[str, Any] | None:
    """This rank's state, or None when the checkpoint was written by fewer ranks than this one's index."""
    path = checkpoint.path / f"rank-{rank}.pt"
    return load_file(path) if path.is_file() else None


def read_network_state(path: str | Path, network: str) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(registry name, constructor args, state_dict) of one network from a training checkpoint directory.

    `path` may be a step directory, a `checkpoints/` directory or a run's output directory (newest checkpoint).
    """
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if candidate.is_dir() and not (candidate / "meta.json").is_file():
            found = CheckpointManager(candidate, keep=0, rank=0, world_size=1).latest()
            if found:
                path = found.path
                break
    checkpoint = read_checkpoint(path)
    model_cfg = checkpoint.meta["config"]["model"]
    role = {
        "sr": "sr",
        "gen_clean_to_real": "generator",
        "gen_real_to_clean": "generator",
        "disc_clean": "discriminator",
        "disc_real": "discriminator",
    }[network]
    for group in checkpoint.meta["groups"]:
        state = load_group(checkpoint, group)
        if network in state["nets"]:
            return model_cfg[role]["name"], model_cfg[role]["args"], state["nets"][network]
    raise KeyError(f"network {network!r} not found in checkpoint {path}")
