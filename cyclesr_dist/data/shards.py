"""Shard writer: image folders -> deterministic WebDataset tar shards + `manifest.json`.

`cyclesr data shard --hr DIR --lr DIR --out DIR [--val-hr DIR --val-lr DIR]` writes into OUT:

- `hr-%06d.tar`: HR crops (default 480×480), one sample per crop: `<key>.png` or, with `--encoding npy`, `<key>.npy`
  (`images.CROP_ENCODINGS`) (+ `<key>.json`: source file, y, x);
- `lr-%06d.tar`: real-LR crops (default 120×120), same layout;
- `val-%06d.tar`: paired validation scenes as whole images, `<key>.hr.png` and `<key>.lr.png` per key
  (LR/HR paired by `data.pairing`);
- `manifest.json`: crop sizes, strides, per-split counts and shard lists, and every skipped file with its reason.
  It is written last (atomically), so its presence means the shards are complete.

Determinism: the same inputs give byte-identical shards and manifest. Files are listed recursively and sorted,
then put in a fixed pseudo-random order (seed 0) so every shard mixes folders; keys come from the relative path
(sanitised, plus a short hash of the exact path so distinct files never collide) and the crop coordinates; tar
headers have mtime 0, uid/gid 0 and fixed user/group names; crops are encoded by `images.CROP_ENCODINGS`.
Decoding, cropping and encoding run in a process pool (`workers`, default: all cores); results are written in input
order.

Crop grid: top-left corners at 0, S, 2S, ... (S = stride, default = the crop size, i.e. tiles), plus one crop flush
with the far edge when the grid leaves at least half a crop uncovered. `stride` is in HR pixels; the LR stride is
scaled by lr_crop / hr_crop (override with `lr_stride`). Files smaller than a crop, or unreadable, are skipped,
counted and listed in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import webdataset as wds

from ..atomic import atomic_write_text
from ..errors import BadInput, InputNotFound
from .images import CROP_ENCODINGS, encode_png, list_images, load_rgb
from .manifest import MANIFEST, MANIFEST_FORMAT
from .pairing import pair_files

SPLIT_PATTERNS = {"hr": "hr-%06d.tar", "lr": "lr-%06d.tar", "val": "val-%06d.tar"}
DEFAULT_SHARD_SIZE = 256  # ~90 MB of 480² PNG crops; many shards = disjoint per-worker shares
_SHARD_NAME = re.compile(r"^(hr|lr|val)-\d{6}\.tar$")
# Fixed tar header fields: byte-identical shards on every machine and run.
_TAR_KW = {"mtime": 0, "user": "cyclesr", "group": "cyclesr", "mode": 0o444}


# ----------------------------------------------------------------------------------------------- keys and crops


def sample_key(rel: str, *, strip_suffix: bool = True) -> str:
    """A WebDataset-safe key for a relative path: no dots (WebDataset splits the extension at the first dot of
    the basename), no slashes, no leading underscores (`__x__` members are skipped as metadata), short enough for
    a ustar header, and unique thanks to a hash of the exact relative path."""
    stem = rel.rsplit(".", 1)[0] if strip_suffix and "." in Path(rel).name else rel
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[-48:].lstrip("_-") or "img"
    digest = hashlib.sha1(rel.encode("utf-8")).hexdigest()[:8]
    return f"{clean}-{digest}"


def crop_positions(size: int, crop: int, stride: int) -> list[int]:
    """Top-left corners along one axis (see module docstring). Empty when size < crop."""
    if size < crop:
        return []
    positions = list(range(0, size - crop + 1, stride))
    if size - (positions[-1] + crop) >= crop // 2 and positions[-1] != size - crop:
        positions.append(size - crop)
    return positions


def _cut(task: tuple[str, str, int, int, str]) -> tuple[str, list[tuple[str, bytes, bytes]] | None, str | None]:
    """Pool worker: one file -> its encoded crops, or a skip reason. Pure, so the output is deterministic."""
    path, rel, crop, stride, encoding = task
    encode = CROP_ENCODINGS[encoding]
    try:
        arr = load_rgb(path)
    except Exception as exn:  # noqa: BLE001 - any decoder error means "unreadable"
        return rel, None, f"unreadable: {type(exn).__name__}: {str(exn).replace(path, rel)}"
    h, w = arr.shape[:2]
    ys, xs = crop_positions(h, crop, stride), crop_positions(w, crop, stride)
    if not ys or not xs:
        return rel, None, f"too small: {w}x{h} < crop {crop}x{crop}"
    base = sample_key(rel)
    out = []
    for y in ys:
        for x in xs:
            meta = json.dumps({"src": rel, "y": y, "x": x}, sort_keys=True).encode()
            out.append((f"{base}-y{y:05d}-x{x:05d}", encode(arr[y : y + crop, x : x + crop]), meta))
    return rel, out, None


def _load_pair(task: tuple[str, str, str]) -> tuple[str, tuple[bytes, bytes] | None, str | None]:
    """Pool worker for the validation split: whole LR and HR images, re-encoded as RGB PNG."""
    stem, hr_path, lr_path = task
    try:
        hr, lr = load_rgb(hr_path), load_rgb(lr_path)
    except Exception as exn:  # noqa: BLE001
        message = str(exn).replace(hr_path, "<hr>").replace(lr_path, "<lr>")
        return stem, None, f"unreadable: {type(exn).__name__}: {message}"
    return stem, (encode_png(hr), encode_png(lr)), None


# --------------------------------------------------------------------------------------------------- writing


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _pool_map(fn: Any, tasks: Sequence[Any], workers: int) -> Iterator[Any]:
    """Ordered map: in-process for one worker, else a spawn pool (safe next to torch threads)."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks, chunksize=1)


class _Shards:
    """`wds.ShardWriter`, opened lazily (no empty shard for an empty split), recording names and counts."""

    def __init__(self, out_dir: Path, split: str, shard_size: int) -> None:
        self.pattern = str(out_dir / SPLIT_PATTERNS[split])
        self.shard_size = shard_size
        self.writer: wds.ShardWriter | None = None
        self.names: list[str] = []
        self.count = 0

    def write(self, sample: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = wds.ShardWriter(
                self.pattern, maxcount=self.shard_size, maxsize=float("inf"), verbose=0, encoder=False, **_TAR_KW
            )
        if self.count % self.shard_size == 0:
            self.names.append(Path(self.pattern % (self.count // self.shard_size)).name)
        self.writer.write(sample)
        self.count += 1

    def close(self) -> dict[str, Any]:
        if self.writer is not None:
            self.writer.close()
        sizes = [min(self.shard_size, self.count - i * self.shard_size) for i in range(len(self.names))]
        return {"shards": self.names, "shard_samples": sizes, "samples": self.count}


def _shuffled_files(root: Path) -> list[tuple[str, str]]:
    files = [(str(p), p.relative_to(root).as_posix()) for p in list_images(root)]
    random.Random(0).shuffle(files)
    return files


def _write_crops(
    root: Path,
    out_dir: Path,
    split: str,
    crop: int,
    stride: int,
    shard_size: int,
    workers: int,
    skipped: list[dict[str, str]],
    encoding: str,
) -> dict[str, Any]:
    files = _shuffled_files(root)
    shards = _Shards(out_dir, split, shard_size)
    used = 0
    for rel, crops, reason in _pool_map(_cut, [(p, rel, crop, stride, encoding) for p, rel in files], workers):
        if crops is None:
            skipped.append({"split": split, "path": rel, "reason": str(reason)})
            continue
        used += 1
        for key, pixels, meta in crops:
            shards.write({"__key__": key, encoding: pixels, "json": meta})
    return {**shards.close(), "files": used, "files_skipped": len(files) - used}


def _write_val(
    hr_root: Path,
    lr_root: Path,
    out_dir: Path,
    scale: int,
    shard_size: int,
    workers: int,
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    pairing = pair_files(lr_root, hr_root, scale)

    def rel(path: Path) -> str:
        root = hr_root if path.is_relative_to(hr_root) else lr_root
        return path.relative_to(root).as_posix()

    for dropped, kept in pairing.duplicates:
        skipped.append({"split": "val", "path": rel(dropped), "reason": f"duplicate stem (kept {rel(kept)})"})
    for path in pairing.hr_only:
        skipped.append({"split": "val", "path": rel(path), "reason": "HR image without a matching LR image"})
    for path in pairing.lr_only:
        skipped.append({"split": "val", "path": rel(path), "reason": "LR image without a matching HR image"})
    tasks = [(key, str(hr), str(lr)) for key, lr, hr in pairing.pairs]
    shards = _Shards(out_dir, "val", shard_size)
    for stem, pair, reason in _pool_map(_load_pair, tasks, workers):
        if pair is None:
            skipped.append({"split": "val", "path": stem, "reason": str(reason)})
            continue
        meta = json.dumps({"src": stem}, sort_keys=True).encode()
        shards.write(
            {"__key__": sample_key(stem, strip_suffix=False), "hr.png": pair[0], "lr.png": pair[1], "json": meta}
        )
    return {**shards.close(), "pairs": shards.count}


def _remove_stale(out_dir: Path) -> None:
    """Shards from an earlier run would be picked up by brace patterns; only our own file names are touched."""
    for p in out_dir.iterdir():
        if p.is_file() and (_SHARD_NAME.match(p.name) or p.name == MANIFEST):
            p.unlink()


def write_shards(
    hr_dir: str | Path,
    lr_dir: str | Path,
    out_dir: str | Path,
    *,
    val_hr_dir: str | Path | None = None,
    val_lr_dir: str | Path | None = None,
    hr_crop: int = 480,
    lr_crop: int = 120,
    stride: int | None = None,
    lr_stride: int | None = None,
    shard_size: int | None = None,
    workers: int | None = None,
    encoding: str = "png",
) -> dict[str, Any]:
    """Write HR/LR crop shards (and the paired validation shards) into `out_dir`; return the manifest.

    Raises FileNotFoundError for a missing input folder and ValueError for bad sizes; individual bad files are
    skipped and listed in `manifest["skipped"]`. `shard_size` None: DEFAULT_SHARD_SIZE. `encoding`: how training
    crops are stored (`images.CROP_ENCODINGS`); validation images stay PNG (read once per validation).
    """
    if encoding not in CROP_ENCODINGS:
        raise BadInput(f"unknown crop encoding {encoding!r}: use one of {', '.join(CROP_ENCODINGS)}")
    shard_size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
    if hr_crop <= 0 or lr_crop <= 0 or shard_size <= 0:
        raise BadInput(
            f"crop sizes and shard size must be positive (hr_crop={hr_crop}, lr_crop={lr_crop}, "
            f"shard_size={shard_size})"
        )
    if (val_hr_dir is None) != (val_lr_dir is None):
        raise BadInput("give both --val-hr and --val-lr, or neither")
    hr_stride = stride or hr_crop
    lr_stride = lr_stride or max(1, round(hr_stride * lr_crop / hr_crop))
    if hr_stride <= 0 or lr_stride <= 0:
        raise BadInput(f"strides must be positive (hr {hr_stride}, lr {lr_stride})")
    workers = workers or _cpu_count()
    roots = [Path(d) for d in (hr_dir, lr_dir, val_hr_dir, val_lr_dir) if d is not None]
    for root in roots:
        if not root.is_dir():
            raise InputNotFound(f"image folder not found: {root}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)

    skipped: list[dict[str, str]] = []
    splits = {
        "hr": _write_crops(Path(hr_dir), out, "hr", hr_crop, hr_stride, shard_size, workers, skipped, encoding),
        "lr": _write_crops(Path(lr_dir), out, "lr", lr_crop, lr_stride, shard_size, workers, skipped, encoding),
    }
    if val_hr_dir is not None and val_lr_dir is not None:
        scale = hr_crop // lr_crop if hr_crop % lr_crop == 0 else None
        splits["val"] = _write_val(Path(val_hr_dir), Path(val_lr_dir), out, scale, shard_size, workers, skipped)
    manifest = {
        "format": MANIFEST_FORMAT,
        "hr_crop": hr_crop,
        "lr_crop": lr_crop,
        "scale": hr_crop // lr_crop if hr_crop % lr_crop == 0 else hr_crop / lr_crop,
        "hr_stride": hr_stride,
        "lr_stride": lr_stride,
        "shard_size": shard_size,
        "encoding": encoding,
        "counts": {name: split["samples"] for name, split in splits.items()},
        "splits": splits,
        "skipped": skipped,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
