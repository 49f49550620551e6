"""Small builders shared by the tests (a plain module: `conftest` is ambiguous with tests/cluster/conftest.py)."""

from __future__ import annotations

import torch

from cyclesr_dist.config import Config, load_config


def tiny_config(**overrides: str) -> Config:
    """A very small model config for unit tests (structure of the reference, tiny widths)."""
    base = [
        "model.generator.args={ngf: 8, n_blocks: 2}",
        "model.discriminator.args={ndf: 8, n_layers: 2}",
        "model.sr.args={nf: 8, nb: 2}",
        "loss.pool_size=4",
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in overrides.items()])


def random_batch(batch: int = 2, lr: int = 16, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, lr * scale, lr * scale, generator=g) * 2 - 1
    return {
        "hr": hr,
        "clean_lr": torch.nn.functional.avg_pool2d(hr, scale),
        "real_lr": torch.rand(batch, 3, lr, lr, generator=g) * 2 - 1,
    }
