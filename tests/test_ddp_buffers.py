"""DDP broadcasts no buffers before a forward (two real gloo ranks, tests/ddp_buffers_driver.py).

The networks' buffers are constants (G's blur kernel and JPEG matrices, the discriminators' band filters) or the SR
net's BatchNorm running statistics, which only rank 0 reads. DDP's default broadcast writes them in place before
every forward; on torch 2.11 (2.12 guards the counters) that bumps their version counters, and G — called twice
before one backward — then fails its backward ("modified by an inplace operation"), as a 2-process demo run did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cyclesr_dist.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_no_buffer_broadcast_and_a_step_of_every_stage_runs(tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    proc = subprocess.run(
        [*cmd, str(ROOT / "tests" / "ddp_buffers_driver.py"), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world_size"] == 2
    nets = report["nets"]
    assert {n["ddp"] for n in nets.values()} == {"DistributedDataParallel"}
    for name in ("gen_clean_to_real", "disc_clean", "disc_real", "sr"):
        assert nets[name]["buffers"] > 0, (name, nets[name])  # the case the broadcast would cover
    assert not any(n["broadcasts_buffers"] for n in nets.values()), nets
    assert report["constants_equal_on_every_rank"]
    assert set(report["losses"]) == {"TRANSLATION", "SR_PRETRAIN", "JOINT"}
    assert all(v == v for stage in report["losses"].values() for v in stage.values())  # no NaN
