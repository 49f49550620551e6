"""`train.compile`: the trainer's networks through torch.compile compute the eager step's maths, and what they save is
the plain modules' checkpoint (an eager run resumes it). Inductor on CPU: about a minute of compiling on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# One residual block per generator and a 3-block SR net: fewer graphs to compile, the same kinds of layers. No noise
# channels: Inductor draws its own random numbers inside a compiled graph, not the eager ones. The JPEG stage and its
# qualities drawn per image stay: it runs eagerly inside the compiled G.
SMALL = ["model.generator.args.n_blocks=1", "model.sr.args.nb=3", "model.generator.args.noise_channels=0"]


def train(demo_data: Path, out: Path, steps: int, *extra: str, env: dict[str, str] | None = None) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", "configs/demo.yaml", f"data.root={demo_data}"]
        + [f"output_dir={out}", f"max_steps={steps}", "data.steps_per_epoch=2", "stages.sr_pretrain_epoch=1"]
        + ["stages.joint_epoch=1", "checkpoint.every_steps=2", "train.log_every=1", "train.val_every_epochs=100"]
        + ["train.image_every=0", "wandb.mode=disabled", "data.num_workers=0", *SMALL, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_compiled_step_matches_eager_and_saves_plain_modules(demo_data: Path, tmp_path: Path) -> None:
    # Joint steps from the start: every network and both updates (D, then G + SR) run compiled.
    eager = train(demo_data, tmp_path / "eager", 2)
    cache = tmp_path / "inductor"  # proof that Inductor compiled: it writes its generated kernels here
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    compiled = train(demo_data, tmp_path / "compiled", 2, "train.compile=true", env=env)
    assert any(cache.rglob("*.py")), "train.compile=true ran without compiling anything"
    assert [r["stage"] for r in compiled] == ["joint", "joint"]
    # Step 1 starts from the same weights: equal to float noise (fused kernels reorder sums). Step 2 follows one
    # Adam update, whose first step moves every weight by about ±lr whatever its gradient's size, so float noise in
    # near-zero gradients shows up: a looser bound there, still far below what a wrong graph would give.
    for e, c, rel in zip(eager, compiled, (1e-4, 5e-3), strict=True):
        for key in ("loss/D_X", "loss/D_Y", "loss/G", "loss/SR"):
            assert c[key] == pytest.approx(e[key], rel=rel), (key, e["step"])

    # the checkpoint holds plain state dicts (no torch.compile prefix): an eager run resumes it
    group = torch.load(tmp_path / "compiled" / "checkpoints" / "step-00000002" / "group-G.pt", weights_only=True)
    keys = [k for net in group["nets"].values() for k in net]
    assert keys and not any("_orig_mod" in k for k in keys)
    resumed = train(demo_data, tmp_path / "compiled", 3)
    assert [r["step"] for r in resumed] == [1, 2, 3]


def test_a_jpeg_generator_compiles_one_graph_per_batch_size() -> None:
    """The JPEG stage's random block offset changes its padded size; compiled, it would take a graph per size, plane
    and batch size (16, past dynamo's limit of 8). It runs eagerly, so G compiles once per batch size."""
    from torch._dynamo.testing import CompileCounter

    from cyclesr_dist.models import GENERATORS

    torch.manual_seed(0)
    gen = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "residual": True, "jpeg_quality": [60, 90]})
    graphs = CompileCounter()  # counts what dynamo hands the backend; no Inductor, so this test is quick
    compiled = torch.compile(gen, backend=graphs, dynamic=False)
    for _ in range(12):  # 40 px: the padded size is 48 or 64 by the offset drawn
        for batch in (2, 4):
            out = compiled(torch.rand(batch, 3, 40, 40) * 2 - 1)
            assert out.shape == (batch, 3, 40, 40)
    assert graphs.frame_count == 2
