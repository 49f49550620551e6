"""The on-disk layout of a training checkpoint and how to read one back (the engine's `CheckpointManager`
writes it; `serve` reads networks out of it without importing the training stack).

One checkpoint, `<output_dir>/checkpoints/step-00001234/`:
  meta.json     step, world size, groups, `networks` ({network: {group, registry, name, args}}), `export` (the
                network a finished run is for), tracker run id, config. Written last: a step directory without it
                is incomplete.
  group-<G>.pt  {"nets": {network: state_dict}, "optimizer": ...} for optimizer group G
  rank-<r>.pt   per-rank state: data-stream position, image pools, RNG states
meta.json also lists every other file of the directory with its size and SHA-256 (`files`): `verify` finds a
truncated, missing or altered file before anything loads it. `checkpoints/latest` names the newest complete step
directory. Everything loads with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

STEP_DIR = re.compile(r"^step-(\d{8})$")
META = "meta.json"
COMMANDS = "commands.txt"  # in a run's output folder: the command line of every start and resume, one per line
LATEST = "latest"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def group_file(group: str) -> str:
    return f"group-{group}.pt"


def rank_file(rank: int) -> str:
    return f"rank-{rank}.pt"


@dataclass
class Checkpoint:
    path: Path
    step: int
    meta: dict[str, Any]


class DamagedCheckpoint(UserError):
    """A checkpoint file is missing, truncated, altered or unreadable; the message names the file."""


def load_file(path: str | Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exn:  # torch's "PytorchStreamReader failed ..." etc.
        raise DamagedCheckpoint(f"{path}: cannot be loaded ({str(exn).splitlines()[0][:200]})") from exn


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
        return Checkpoint(path, int(meta["step"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as exn:
        raise DamagedCheckpoint(f"{path / META}: unreadable ({exn})") from exn


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(step_dir: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `step_dir` except meta.json."""
    return {
        p.relative_to(step_dir).as_posix(): {"size": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(step_dir.rglob("*"))
        if p.is_file() and p.name != META
    }


def verify(checkpoint: Checkpoint, checksums: bool = True) -> list[str]:
    """What is wrong with the checkpoint's files ([] = intact): missing, wrong size, or (with `checksums`, which
    reads every byte) altered. A checkpoint written before the table existed is checked for loadable .pt files."""
    table = checkpoint.meta.get("files")
    if table is None:
        problems = []
        for path in sorted(checkpoint.path.glob("*.pt")):
            try:
                load_file(path)
            except DamagedCheckpoint as exn:
                problems.append(str(exn))
        return problems
    problems = []
    for rel, entry in table.items():
        path = checkpoint.path / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, {entry['size']} were written")
        elif checksums and file_digest(path) != entry["sha256"]:
            problems.append(f"{rel}: contents changed (SHA-256 differs)")
    return problems


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Step directories under `root` that have their meta.json, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / META).is_file()]
    return sorted(found, key=lambda p: p.name)


def candidates(root: str | Path) -> list[Path]:
    """Complete step directories, most preferred first: the one `latest` names, then newest to oldest (a kill
    between the rename of a step directory and the rewrite of `latest` leaves the pointer one behind)."""
    root = Path(root)
    pointer = root / LATEST
    named = [root / pointer.read_text().strip()] if pointer.is_file() else []
    ordered = [p for p in named if STEP_DIR.match(p.name) and (p / META).is_file()]
    return ordered + [p for p in reversed(complete_checkpoints(root)) if p not in ordered]


def latest_checkpoint(root: str | Path) -> Checkpoint | None:
    """The most preferred complete checkpoint whose meta.json reads (no checksums: see `verify`)."""
    for path in candidates(root):
        try:
            return read_checkpoint(path)
        except DamagedCheckpoint:
            continue
    return None


def find_checkpoint(path: str | Path) -> Checkpoint:
    """A step directory, or the newest complete checkpoint under a `checkpoints/` folder or a run's output folder."""
    path = Path(path)
    if (path / META).is_file():
        return read_checkpoint(path)
    for root in (path, path / "checkpoints"):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise UserError(
        f"no complete checkpoint at {path}: give a run folder, its checkpoints/ folder or a step-XXXXXXXX folder"
    )


def network_entry(checkpoint: Checkpoint, network: str | None = None) -> tuple[str, dict[str, Any]]:
    """(network name, {group, registry, name, args}) from meta.json; `network=None` is the exported one."""
    networks = checkpoint.meta.get("networks", {})
    name = network or checkpoint.meta.get("export", "")
    if name not in networks:
        raise UserError(f"network {name!r} is not in checkpoint {checkpoint.path} (it has: {', '.join(networks)})")
    return name, networks[name]


def network_state(checkpoint: Checkpoint, network: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """({registry, name, args}, state_dict) of one network, reading only the file of its optimizer group (checked
    against its size and checksum first)."""
    name, entry = network_entry(checkpoint, network)
    rel = group_file(entry["group"])
    table = checkpoint.meta.get("files", {})
    if rel in table:
        problems = verify(Checkpoint(checkpoint.path, checkpoint.step, {"files": {rel: table[rel]}}))
        if problems:
            raise DamagedCheckpoint(f"{checkpoint.path}: {problems[0]}")
    state = load_file(checkpoint.path / rel)
    return entry, state["nets"][name]
