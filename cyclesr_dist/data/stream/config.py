"""The settings of one rank's streams, frozen: every worker gets a copy and nothing changes them in flight."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

DEFAULT_SEGMENT_SAMPLES = 4096
DOMAINS = ("hr", "lr")


def fingerprint(urls: tuple[str, ...]) -> int:
    """Shard list identity by file name (so moving the shards to another bucket or folder keeps the position)."""
    return zlib.crc32("\n".join(u.rstrip("/").rsplit("/", 1)[-1] for u in urls).encode())


@dataclass(frozen=True)
class StreamConfig:
    hr_urls: tuple[str, ...]
    lr_urls: tuple[str, ...]
    hr_patch: int  # HR training patch; the LR patch is hr_patch // scale
    scale: int
    batch_size: int  # per rank
    num_workers: int  # logical workers (>= 1; 0 DataLoader workers still run one logical worker in-process)
    seed: int
    rank: int = 0
    world_size: int = 1
    shuffle_buffer: int = 256
    segment_samples: int = DEFAULT_SEGMENT_SAMPLES  # bounds the resume fast-forward (raw reads per domain/worker)
    generation: int = 0  # bumped when a saved position cannot be replayed exactly (fresh streams)
    hr_augment: str = "dihedral"
    lr_augment: str = "dihedral"
    hr_to_lr: str = "bicubic"

    def __post_init__(self) -> None:
        if self.scale < 1 or self.hr_patch < self.scale or self.hr_patch % self.scale:
            raise ValueError(f"hr_patch ({self.hr_patch}) must be a positive multiple of scale ({self.scale})")
        if self.batch_size < 1 or self.num_workers < 1 or self.segment_samples < 1 or self.shuffle_buffer < 0:
            raise ValueError("batch_size, num_workers and segment_samples must be >= 1, shuffle_buffer >= 0")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")

    def urls(self, domain: str) -> tuple[str, ...]:
        return self.hr_urls if domain == "hr" else self.lr_urls

    def patch(self, domain: str) -> int:
        return self.hr_patch if domain == "hr" else self.hr_patch // self.scale

    def with_generation(self, generation: int) -> StreamConfig:
        return dataclasses.replace(self, generation=generation)

    def resume_key(self) -> dict[str, Any]:
        """What must be unchanged for a saved position to replay exactly."""
        key = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for domain in DOMAINS:
            urls = key.pop(f"{domain}_urls")
            key[f"{domain}_shards"], key[f"n_{domain}_shards"] = fingerprint(urls), len(urls)
        del key["generation"]
        return key
