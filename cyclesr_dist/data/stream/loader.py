"""The rank's loader: zips each worker's HR and LR streams into batches and keeps the resumable position."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ...errors import BadInput
from ..augment import HrToLr
from ..manifest import check_shards, is_manifest_dir, read_manifest
from .config import DOMAINS, StreamConfig
from .domain import SKIP_KINDS, DomainStream

log = logging.getLogger(__name__)

STATE_VERSION = 2


def _fresh_worker_state() -> dict[str, Any]:
    zeros = dict.fromkeys(SKIP_KINDS, 0)
    return {"hr": [0, 0], "lr": [0, 0], "batches": 0, "skipped": {"hr": dict(zeros), "lr": dict(zeros)}}


class _UnpairedStream(IterableDataset):
    """Worker side: zips this worker's HR and LR streams into batches that carry the worker's position."""

    def __init__(self, config: StreamConfig, start: list[dict[str, Any]], rotation: int) -> None:
        super().__init__()
        self.config, self.start, self.rotation = config, start, rotation

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        worker = (physical + self.rotation) % self.config.num_workers
        start = self.start[worker]
        hr = DomainStream(self.config, "hr", worker, start["hr"], start["skipped"].get("hr", {}))
        lr = DomainStream(self.config, "lr", worker, start["lr"], start["skipped"].get("lr", {}))
        hr_it, lr_it = iter(hr), iter(lr)
        batch_size, batches = self.config.batch_size, int(start["batches"])
        while True:
            items = [next(hr_it) for _ in range(batch_size)] + [next(lr_it) for _ in range(batch_size)]
            batch = {key: torch.stack([i[key] for i in items if key in i]) for key in ("hr", "clean_lr", "real_lr")}
            batches += 1
            state = {
                "hr": hr.position(),
                "lr": lr.position(),
                "batches": batches,
                "skipped": {"hr": dict(hr.guard.counts), "lr": dict(lr.guard.counts)},
            }
            yield {**batch, "_meta": {"worker": worker, "state": state}}


class StreamingUnpairedLoader:
    """Endless unpaired batches `{"hr", "clean_lr", "real_lr"}` for one rank; see the package docstring.

    `num_workers=0` decodes in the calling process (one logical worker). Each `iter()` builds one DataLoader
    iteration (fresh workers starting at the current position) and only the newest iterator is live.
    """

    def __init__(
        self,
        hr_shards: Any,
        lr_shards: Any,
        *,
        hr_patch: int,
        scale: int,
        batch_size: int,
        num_workers: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        multiprocessing_context: Any = None,
        **settings: Any,
    ) -> None:
        """Expands and checks the shard lists (ValueError / FileNotFoundError before anything starts) and refuses a
        patch larger than the stored crops. `settings`: the other `StreamConfig` fields (shuffle_buffer,
        segment_samples, hr_augment, lr_augment, hr_to_lr)."""
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.config = StreamConfig(
            tuple(check_shards(hr_shards, "hr")),
            tuple(check_shards(lr_shards, "lr")),
            hr_patch=hr_patch,
            scale=scale,
            batch_size=batch_size,
            num_workers=max(1, num_workers),
            seed=int(seed),
            rank=rank,
            world_size=world_size,
            **settings,
        )
        for source, domain in ((hr_shards, "hr"), (lr_shards, "lr")):
            if is_manifest_dir(source):
                crop = read_manifest(source).get(f"{domain}_crop")
                patch = self.config.patch(domain)
                if crop is not None and patch > crop:
                    raise BadInput(
                        f"{domain} patch {patch} is larger than the stored {domain} crops ({crop}) in {source}: "
                        "lower data.hr_patch or rewrite the shards with larger crops"
                    )
        HrToLr(self.config.hr_to_lr, scale)  # an unknown name fails here, not inside a worker
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        workers = self.config.num_workers
        for domain in DOMAINS:
            n = len(self.config.urls(domain))
            if n < world_size * workers:
                log.warning(
                    "%d %s shards for %d ranks x %d workers: workers share shards (resampled with distinct seeds); "
                    "write at least %d shards (smaller --shard-size) for disjoint shares",
                    n,
                    domain,
                    world_size,
                    workers,
                    world_size * workers,
                )
        self._batches = 0  # consumed in this generation: decides the worker rotation on resume
        self._total_batches = 0
        self._workers = [_fresh_worker_state() for _ in range(workers)]
        self._carried: dict[str, int] = {}
        self._live = 0

    # ------------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._live += 1
        token = self._live
        dataset = _UnpairedStream(self.config, [dict(w) for w in self._workers], self._batches % len(self._workers))
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            kwargs.update(prefetch_factor=self.prefetch_factor, multiprocessing_context=self.multiprocessing_context)
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            in_order=True,
            generator=torch.Generator(),  # not the global RNG: see data.folder.IndexedLoader
            **kwargs,
        )
        return self._consume(loader, token)

    def _consume(self, loader: DataLoader, token: int) -> Iterator[dict[str, torch.Tensor]]:
        for batch in loader:
            if token != self._live:
                return  # a newer iter() took over; stop feeding (and counting) from this one
            meta = batch.pop("_meta")
            self._workers[int(meta["worker"])] = meta["state"]
            self._batches += 1
            self._total_batches += 1
            yield batch

    # ------------------------------------------------------------------------------------------------ state

    def skipped(self) -> dict[str, int]:
        """Skipped samples seen so far by this rank, all workers (and earlier runs restored from state)."""
        out = {f"{d}_{kind}": 0 for d in DOMAINS for kind in SKIP_KINDS}
        for state in self._workers:
            for domain in DOMAINS:
                for kind, n in state["skipped"][domain].items():
                    out[f"{domain}_{kind}"] += int(n)
        for name, n in self._carried.items():
            out[name] = out.get(name, 0) + int(n)
        return out

    def state_dict(self) -> dict[str, Any]:
        """This rank's position (plain python types; `torch.load(..., weights_only=True)`-safe)."""
        return {
            "version": STATE_VERSION,
            "config": self.config.resume_key(),
            "generation": self.config.generation,
            "batches": self._batches,
            "total_batches": self._total_batches,
            "workers": [
                {
                    "hr": list(w["hr"]),
                    "lr": list(w["lr"]),
                    "batches": int(w["batches"]),
                    "skipped": {d: dict(w["skipped"][d]) for d in DOMAINS},
                }
                for w in self._workers
            ],
            "carried_skipped": dict(self._carried),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by `state_dict()`; call before iterating. Exact when the configuration matches,
        otherwise (warning) fresh streams under a new generation."""
        if int(state.get("version", -1)) != STATE_VERSION:
            log.warning("data loader state version %r is not %d: starting fresh streams", state.get("version"), 2)
            self._restart(int(state.get("generation", 0)) + 1)
            return
        saved, current = dict(state["config"]), self.config.resume_key()
        self._total_batches = int(state.get("total_batches", state["batches"]))
        self._carried = {k: int(v) for k, v in state.get("carried_skipped", {}).items()}
        self._live += 1  # any iterator made before this point is stale
        if saved == current:
            self.config = self.config.with_generation(int(state["generation"]))
            self._batches = int(state["batches"])
            self._workers = [
                {
                    "hr": [int(v) for v in w["hr"]],
                    "lr": [int(v) for v in w["lr"]],
                    "batches": int(w["batches"]),
                    "skipped": {d: {k: int(v) for k, v in w["skipped"][d].items()} for d in DOMAINS},
                }
                for w in state["workers"]
            ]
            return
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        log.warning(
            "data loader state does not match this run (%s changed): no exact resume, starting fresh streams "
            "(generation %d)",
            ", ".join(changed),
            int(state["generation"]) + 1,
        )
        for w in state["workers"]:
            for domain in DOMAINS:
                for kind, n in w["skipped"][domain].items():
                    name = f"{domain}_{kind}"
                    self._carried[name] = self._carried.get(name, 0) + int(n)
        self._restart(int(state["generation"]) + 1)

    def _restart(self, generation: int) -> None:
        self._live += 1
        self.config = self.config.with_generation(generation)
        self._batches = 0
        self._workers = [_fresh_worker_state() for _ in range(self.config.num_workers)]
