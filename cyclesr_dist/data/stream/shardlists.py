"""Which shards each (rank, worker) reads: an explicit split, never one inferred from the environment."""

from __future__ import annotations


def shard_assignment(urls: list[str], rank: int, world_size: int, num_workers: int) -> list[list[str]]:
    """The exact split of one pass: rank r takes shards r, r + world, ...; its worker w takes every num_workers-th
    of those from w (`split_by_node` then `split_by_worker` with explicit ranks). Lists may be empty."""
    mine = urls[rank::world_size]
    return [mine[w::num_workers] for w in range(max(1, num_workers))]


def training_shards(urls: list[str], rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
    """The shards a training (resampling) worker draws from: its own share when every (rank, worker) has one,
    else its rank's share, else all shards."""
    num_workers = max(1, num_workers)
    if len(urls) >= world_size * num_workers:
        return shard_assignment(urls, rank, world_size, num_workers)[worker]
    if len(urls) >= world_size:
        return urls[rank::world_size]
    return list(urls)
