"""The training-step benchmark's roofline (benchmarks/throughput/roofline.py) counts the step the trainer runs;
both throughput benchmarks answer bad arguments with one line. The roofline runs on the meta device: counts only,
no compute, no timing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from cyclesr_dist.cyclesr import Stage
from cyclesr_dist.testing import tiny_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from throughput.roofline import roofline  # noqa: E402


def _bound(batched_calls: bool | str) -> dict:
    c = tiny_config()
    c = dataclasses.replace(c, train=dataclasses.replace(c.train, batched_calls=batched_calls))
    return roofline(c, 16, 4, Stage.JOINT, peak_tflops=989.0, hbm_tbps=3.35, bytes_el=2)


def test_roofline_counts_the_calls_the_trainer_makes() -> None:
    separate, batched, auto = _bound(False), _bound(True), _bound("auto")
    assert (separate["calls"], batched["calls"], auto["calls"]) == ("separate", "batched", "batched")
    # the same maths in fewer, larger calls: fewer kernels, about the same FLOPs (F's first convolution
    # computes an input gradient for all of [y; x; G(x)] since G(x) needs one: +1.3 % FLOPs at these tiny widths)
    assert batched["kernels"] < 0.8 * separate["kernels"]
    assert batched["rows"]["conv"]["flops"] == pytest.approx(separate["rows"]["conv"]["flops"], rel=0.02)
    # bytes: the cat's copies added, each weight read by fewer calls (which at these tiny widths is the larger part)
    assert 0.8 * separate["eager_bound_s"] < batched["eager_bound_s"] <= 1.01 * separate["eager_bound_s"]
    assert auto["kernels"] == batched["kernels"]


def test_missing_checkpoint_dir_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    cmd = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--checkpoint", "--checkpoint-dir"]
    proc = subprocess.run([*cmd, str(missing)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"--checkpoint-dir {missing} is not a directory: create it, or leave the flag out"


def test_data_benchmark_on_missing_shards_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "data_throughput.py"), "--shards", str(tmp_path / "none")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().startswith(f"data_throughput.py: error: no manifest.json at {tmp_path / 'none'}")


def test_data_benchmark_refuses_encodings_for_written_shards(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "data_throughput.py"), "--shards", str(tmp_path)]
    proc = subprocess.run([*cmd, "--encodings", "npy"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        "data_throughput.py: error: --encodings shards the demo photos here; --shards are written already "
        "(one encoding)"
    )
