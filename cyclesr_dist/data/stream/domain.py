"""One domain's endless stream of training items inside one DataLoader worker, with its resumable position."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from ..augment import HrToLr, random_patch
from ..images import decode_npy, pil_to_rgb, uint8_to_pixels
from .config import DOMAINS, StreamConfig
from .shardlists import training_shards

log = logging.getLogger(__name__)

MAX_EMPTY_SHARDS = 100
MAX_BAD_SAMPLES = 2000
MAX_LOGGED_ERRORS = 3  # per domain and worker; the rest are only counted
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "ppm")
SKIP_KINDS = ("shard_errors", "corrupt", "too_small", "no_image")
_MASK64 = (1 << 64) - 1


def _zero() -> int:
    return 0


class _Guard:
    """Per-domain skip counters and the no-progress guard (raises instead of spinning forever)."""

    def __init__(self, domain: str, counts: dict[str, int], shards: list[str]) -> None:
        self.domain = domain
        self.counts = {kind: int(counts.get(kind, 0)) for kind in SKIP_KINDS}
        self.shards = shards
        self.muted = False  # while fast-forwarding: those errors were counted before the checkpoint
        self.empty_draws = 0
        self.bad_run = 0

    def count(self, kind: str) -> None:
        if not self.muted:
            self.counts[kind] += 1

    def handler(self, exn: Exception) -> bool:
        self.count("shard_errors")
        if not self.muted:
            level = logging.WARNING if self.counts["shard_errors"] <= MAX_LOGGED_ERRORS else logging.DEBUG
            log.log(level, "%s stream: shard error, skipping: %s", self.domain, repr(exn)[:300])
        return True

    def shard_drawn(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in src:
            self.empty_draws += 1
            if self.empty_draws > MAX_EMPTY_SHARDS:
                raise RuntimeError(self._message(f"{MAX_EMPTY_SHARDS} shard reads in a row gave no sample"))
            yield item

    def sample_seen(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in src:
            self.empty_draws = 0
            yield item

    def bad(self, kind: str) -> None:
        self.count(kind)
        self.bad_run += 1
        if self.bad_run > MAX_BAD_SAMPLES:
            raise RuntimeError(self._message(f"{MAX_BAD_SAMPLES} samples in a row were unusable"))

    def _message(self, what: str) -> str:
        shown = ", ".join(self.shards[:3]) + (", ..." if len(self.shards) > 3 else "")
        return f"{self.domain} stream: {what} (skipped so far: {self.counts}); shards: {shown}"


def decode_member(sample: dict[str, Any], min_side: int) -> np.ndarray | str:
    """The member's image as HxWx3 uint8, or a skip kind (str) for unusable members."""
    if "npy" in sample:  # raw pixels (`cyclesr data shard --encoding npy`)
        try:
            img = decode_npy(sample["npy"])
        except Exception:  # noqa: BLE001 - any reader error
            return "corrupt"
        return "too_small" if min(img.shape[:2]) < min_side else img
    data = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
    if data is None:
        return "no_image"
    try:
        with Image.open(io.BytesIO(data)) as img:
            if min(img.size) < min_side:  # header only: no decode for members that are too small
                return "too_small"
            img.load()
            return np.asarray(pil_to_rgb(img), dtype=np.uint8)
    except Exception:  # noqa: BLE001 - any decoder error
        return "corrupt"


def item_maker(config: StreamConfig, domain: str) -> Callable[[np.ndarray, np.random.Generator], dict]:
    """Decoded image -> training item, by the shared rule of `data.augment`: HR -> {"hr", "clean_lr"},
    LR -> {"real_lr"}."""
    patch = config.patch(domain)
    if domain == "hr":
        make_lr = HrToLr(config.hr_to_lr, config.scale)
        return lambda img, rng: make_lr(random_patch(img, patch, rng, config.hr_augment), rng)
    return lambda img, rng: {"real_lr": uint8_to_pixels(random_patch(img, patch, rng, config.lr_augment))}


class DomainStream:
    """One domain's endless stream of items in one worker, with its (segment, offset) position."""

    def __init__(
        self, config: StreamConfig, domain: str, worker: int, start: list[int], skipped: dict[str, int]
    ) -> None:
        self.config, self.domain, self.worker = config, domain, worker
        self.stream_id = DOMAINS.index(domain)
        c = config
        self.shards = training_shards(list(c.urls(domain)), c.rank, c.world_size, worker, c.num_workers)
        self.make_item = item_maker(config, domain)
        self.segment, self.offset = int(start[0]), int(start[1])
        self.guard = _Guard(domain, skipped, self.shards)

    def _words(self, *extra: int) -> list[int]:
        c = self.config
        return [c.seed & _MASK64, self.stream_id, c.generation, c.rank, self.worker, *extra]

    def _raw_segment(self, segment: int) -> Iterator[dict[str, Any]]:
        s0, s1 = (int(s) for s in np.random.SeedSequence(self._words(segment, 0)).generate_state(2))
        bufsize = self.config.shuffle_buffer
        pipeline = wds.DataPipeline(
            wds.ResampledShards(self.shards, seed=s0, worker_seed=_zero, deterministic=True),
            self.guard.shard_drawn,
            wds.tarfile_to_samples(handler=self.guard.handler),
            self.guard.sample_seen,
            wds.shuffle(bufsize, initial=bufsize, seed=s1) if bufsize > 1 else None,
        )
        return iter(pipeline)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        per_segment = self.config.segment_samples
        patch = self.config.patch(self.domain)
        while True:
            if self.offset >= per_segment:
                self.segment, self.offset = self.segment + 1, 0
            raw = self._raw_segment(self.segment)
            if self.offset:
                self.guard.muted = True  # fast-forward: raw tar reads only, nothing decoded or counted
                for _ in range(self.offset):
                    next(raw)
                self.guard.muted = False
            while self.offset < per_segment:
                sample = next(raw)
                index = self.offset
                self.offset += 1
                img = decode_member(sample, patch)
                if isinstance(img, str):
                    self.guard.bad(img)
                    continue
                self.guard.bad_run = 0
                yield self.make_item(img, np.random.default_rng(self._words(self.segment, 1, index)))
            self.segment, self.offset = self.segment + 1, 0

    def position(self) -> list[int]:
        return [self.segment, self.offset]
