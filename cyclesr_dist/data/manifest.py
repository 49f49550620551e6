"""Shard lists: a shard folder's `manifest.json` (written last by `cyclesr data shard`, so its presence means the
shards are complete), brace patterns, `::`-joined patterns and URL lists, expanded and checked before training.

Shards are local paths, `pipe:` commands or http(s) URLs (anything `webdataset.gopen` opens).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import webdataset as wds

from ..errors import BadInput, InputNotFound

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "cyclesr-shards/1"


def read_manifest(base: str | Path) -> dict[str, Any]:
    """`manifest.json` of a shard folder (a local directory, or an http(s)/other URL prefix WebDataset can open)."""
    text = str(base)
    if "://" in text and not text.startswith("file://"):
        url = text.rstrip("/") + "/" + MANIFEST
        try:
            with wds.gopen(url, "rb") as stream:
                return json.loads(stream.read().decode())
        except Exception as exn:  # noqa: BLE001 - curl exit codes, HTTP errors, an HTML error page
            reason = str(exn).strip().splitlines()[-1][:200] if str(exn).strip() else type(exn).__name__
            raise InputNotFound(
                f"cannot read {url} ({reason}): check the address and that the server is up, or give a local folder"
            ) from exn
    path = Path(text.removeprefix("file://"))
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise InputNotFound(f"no {MANIFEST} at {path}; write shards with `cyclesr data shard`")
    try:
        return json.loads(path.read_text())
    except ValueError as exn:
        raise BadInput(f"{path} is not a shard manifest ({exn}); rewrite the shards with `cyclesr data shard`") from exn


def split_urls(base: str | Path, split: str) -> list[str]:
    """Shard URLs of one split ("hr", "lr" or "val") listed in the manifest under `base`."""
    manifest = read_manifest(base)
    if split not in manifest.get("splits", {}):
        raise BadInput(f"{base}: the manifest has no {split!r} split (has {sorted(manifest.get('splits', {}))})")
    text = str(base)
    if "://" in text and not text.startswith("file://"):
        return [text.rstrip("/") + "/" + name for name in manifest["splits"][split]["shards"]]
    root = Path(text.removeprefix("file://"))
    root = root if root.is_dir() else root.parent
    return [str(root / name) for name in manifest["splits"][split]["shards"]]


def is_manifest_dir(source: Any) -> bool:
    if not isinstance(source, (str, Path)):
        return False
    text = str(source)
    if "{" in text or "::" in text or text.endswith(".tar"):
        return False
    if "://" in text and not text.startswith("file://"):
        return text.endswith("/")
    path = Path(text.removeprefix("file://"))
    return path.is_dir() or path.name == MANIFEST


def _local_path(url: str) -> Path | None:
    """The file behind a local shard URL (as `wds.gopen` decides it), None for pipe:/remote URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "":
        return Path(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return None


def _expand(urls: Any, split: str | None) -> list[str]:
    if isinstance(urls, (str, Path)):
        if is_manifest_dir(urls):
            if split is not None:
                return split_urls(urls, split)
            splits = read_manifest(urls).get("splits", {})
            return [u for name in sorted(splits) for u in split_urls(urls, name)]
        return [u for u in wds.shardlists.expand_urls(str(urls)) if u.strip()]
    if urls is None:
        return []
    out: list[str] = []
    for item in urls:
        out.extend(_expand(item, split))
    return out


def check_shards(urls: str | Path | Iterable[str], split: str | None = None) -> list[str]:
    """Expand `urls` (brace pattern, `::`-joined patterns, list, or a shard folder / manifest.json) to a list.

    For a shard folder, `split` ("hr", "lr", "val") picks one split; without it every listed shard is returned.
    Raises ValueError for an empty list and FileNotFoundError naming missing local shards. `pipe:` and remote URLs
    are not probed (that would cost a download); their errors surface as counted `shard_errors` at train time.
    """
    expanded = _expand(urls, split)
    if not expanded:
        where = f" ({split!r} split)" if split else ""
        raise BadInput(f"no shards{where}: {urls!r} expands to an empty shard list")
    missing = [u for u in expanded if (path := _local_path(u)) is not None and not path.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise InputNotFound(f"{len(missing)} of {len(expanded)} shards not found: {shown}")
    return expanded
