"""What the trainer asks the data layer for: this rank's training loader and the paired validation images, from
the `data` section of the config (folder or WebDataset)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..config import Config, DataConfig
from ..errors import BadInput, InputNotFound
from .folder import FolderUnpairedLoader, IndexedLoader
from .images import list_images, load_rgb, read_image
from .manifest import check_shards, is_manifest_dir, read_manifest
from .pairing import pair_files

ValPair = tuple[str, np.ndarray, np.ndarray]  # (name, lr_uint8, hr_uint8)


def with_epoch_from_data(config: Config) -> Config:
    """`data.steps_per_epoch=0` resolved to one pass over the HR images (crops in shards), the last partial batch
    dropped, as the reference counts an epoch; any other value is returned as is."""
    data = config.data
    if data.steps_per_epoch > 0:
        return config
    if data.kind == "folder":
        count = len(list_images(Path(data.root) / "hr"))
    elif is_manifest_dir(data.hr_shards):
        count = int(read_manifest(data.hr_shards)["counts"]["hr"])
    else:
        raise BadInput(
            "data.steps_per_epoch=0 counts the HR images in the shard folder's manifest.json, but data.hr_shards "
            "is a list of shard URLs: give the folder, or set data.steps_per_epoch"
        )
    steps = count // data.batch_size
    if steps < 1:
        raise BadInput(
            f"data.steps_per_epoch=0 makes an epoch one pass over the HR images, but there are {count} for a "
            f"batch of {data.batch_size}: add images, lower data.batch_size or set data.steps_per_epoch"
        )
    return dataclasses.replace(config, data=dataclasses.replace(data, steps_per_epoch=steps))


def unpaired_folder_root(data: DataConfig) -> Path:
    """`data.root` of the folder kind, checked to hold both domains."""
    root = Path(data.root)
    for sub in ("hr", "real_lr"):
        if not (root / sub).is_dir():
            raise InputNotFound(
                f"data.root={data.root}: no {sub}/ folder (data.kind=folder reads root/hr and root/real_lr)"
            )
    return root


def build_train_loader(data: DataConfig, *, seed: int, rank: int, world_size: int, micro_batch: int):
    """An endless, resumable iterator of `{hr, clean_lr, real_lr}` batches of `micro_batch` samples for this rank
    (`state_dict`, `load_state_dict`, `skipped`). Errors in the data settings raise before any worker starts."""
    common = dict(
        hr_patch=data.hr_patch,
        scale=data.scale,
        batch_size=micro_batch,
        num_workers=data.num_workers,
        seed=seed,
        rank=rank,
        pin_memory=data.pin_memory and torch.cuda.is_available(),
        hr_augment=data.hr_augment,
        lr_augment=data.lr_augment,
        hr_to_lr=data.hr_to_lr,
    )
    if data.kind == "folder":
        root = unpaired_folder_root(data)
        loader: IndexedLoader = FolderUnpairedLoader(root / "hr", root / "real_lr", **common)
        return loader
    from .stream import StreamingUnpairedLoader

    return StreamingUnpairedLoader(data.hr_shards, data.lr_shards, world_size=world_size, **common)


def unpaired_images(
    data: DataConfig, domain: str, limit: int, convert: Callable[[np.ndarray], np.ndarray] | None = None
) -> list[tuple[str, np.ndarray]]:
    """Up to `limit` (name, uint8 image) samples of one domain ("hr" or "real_lr"), spread evenly over the set and
    the same on every call: whole files (folder kind) or crops, the first few of evenly chosen shards (webdataset
    kind), each passed through `convert` as it is read (so that large photos need not be held at once). For
    measuring the data before training; an unreadable member is left out (training counts those)."""
    convert = convert or (lambda img: img)
    if data.kind == "folder":
        paths = list_images(unpaired_folder_root(data) / domain)
        return [(str(paths[i]), convert(read_image(paths[i]))) for i in _spread(len(paths), limit)]
    import webdataset as wds

    from .stream.domain import decode_member

    split = "hr" if domain == "hr" else "lr"
    urls = check_shards(data.hr_shards if domain == "hr" else data.lr_shards, split=split)
    urls = [urls[i] for i in _spread(len(urls), limit)]
    per_shard = -(-limit // len(urls))
    out = []
    for url in urls:
        # an unreadable shard is skipped here as in training; none readable at all is the caller's error
        samples = wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples(handler=wds.warn_and_continue))
        for sample in itertools.islice(samples, per_shard):
            img = decode_member(sample, min_side=1)
            if not isinstance(img, str):
                out.append((f"{url}:{sample['__key__']}", convert(img)))
    return out[:limit]


def _spread(count: int, limit: int) -> list[int]:
    """min(count, limit) indices spread evenly over range(count), first and last included."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, limit))}) if count else []


def folder_val_pairs(lr_dir: str | Path, hr_dir: str | Path, max_images: int = 0, scale: int | None = None):
    """(name, lr_uint8, hr_uint8) for the files `data.pairing` pairs."""
    pairs = pair_files(lr_dir, hr_dir, scale).pairs
    if max_images:
        pairs = pairs[:max_images]
    return [(name, load_rgb(lr), load_rgb(hr)) for name, lr, hr in pairs]


def load_val_pairs(data: DataConfig) -> list[ValPair]:
    """The paired validation images (folder: root/val/{lr,hr}; WebDataset: data.val_shards), or [] if none."""
    if data.kind == "folder":
        val = Path(data.root) / "val"
        if (val / "lr").is_dir() and (val / "hr").is_dir():
            return folder_val_pairs(val / "lr", val / "hr", data.val_max_images, data.scale)
        return []
    if data.val_shards:
        from .val_shards import iter_val_pairs

        pairs = list(iter_val_pairs(data.val_shards))
        return pairs[: data.val_max_images] if data.val_max_images else pairs
    return []
