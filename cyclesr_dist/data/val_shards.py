"""Paired validation images from the `val` split of WebDataset shards (`<key>.hr.png` / `<key>.lr.png`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import webdataset as wds

from .images import decode_rgb
from .manifest import is_manifest_dir, split_urls


def iter_val_pairs(
    out_dir_or_urls: str | Path | Iterable[str], *, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield `(key, lr_uint8, hr_uint8)` (HxWx3) for every validation pair, in shard order.

    `out_dir_or_urls`: a shard folder with a manifest (its "val" split), a brace pattern, or a list of URLs.
    With `world_size > 1`, rank r gets pairs r, r + world_size, ... . Undecodable pairs are skipped with a warning.
    """
    if is_manifest_dir(out_dir_or_urls):
        urls = split_urls(out_dir_or_urls, "val")  # type: ignore[arg-type]
    elif isinstance(out_dir_or_urls, (str, Path)):
        urls = wds.shardlists.expand_urls(str(out_dir_or_urls))
    else:
        urls = list(out_dir_or_urls)
    if not urls:
        return
    pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(handler=wds.warn_and_continue))
    for index, sample in enumerate(pipeline):
        if index % world_size != rank:
            continue
        try:
            hr, lr = decode_rgb(sample["hr.png"]), decode_rgb(sample["lr.png"])
        except Exception as exn:  # noqa: BLE001
            print(f"warning: skipping validation pair {sample.get('__key__')}: {exn!r}", file=sys.stderr)
            continue
        yield sample["__key__"], lr, hr
