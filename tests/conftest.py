from __future__ import annotations

from pathlib import Path

import pytest
import torch


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
