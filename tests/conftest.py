from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclesr_dist.config import Config, load_config


@pytest.fixture(autouse=True)
def _two_threads():
    # The CI machine has 2 cores; pinning keeps timings sane when tests run beside other work.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from cyclesr_dist.data.demo import build_demo_data

    root = tmp_path_factory.mktemp("demo")
    build_demo_data(root)
    return root


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
