"""CI's short soak (benchmarks/soak.py, the full one's figures are in BENCHMARKS.md): a 2-process DDP run
preempted twice (SIGTERM or SIGUSR1 to a random rank) and SIGKILLed twice (one kill aimed at a save in progress),
resuming every time, must end bitwise equal to the same run uninterrupted, with every step trained once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import soak  # noqa: E402


@pytest.mark.slow
def test_short_soak_ends_bitwise_equal_to_an_uninterrupted_run(demo_data: Path, tmp_path: Path) -> None:
    code = soak.main(
        ["--work", str(tmp_path), "--data", str(demo_data), "--steps", "24", "--preemptions", "2"]
        + ["--kills", "2", "--kill-window", "1", "--seed", "3"]
    )
    report = json.loads((tmp_path / "soak.json").read_text())
    actions = [e["action"] for e in report["events"]]
    assert code == 0, report
    assert sorted(actions) == ["finish", "kill", "kill", "preempt", "preempt"], actions
    assert all(e["latest_intact"] for e in report["events"])
    assert all("signal" in e for e in report["events"] if e["action"] == "preempt")  # each really was signalled
    assert report["weights_bitwise_equal"] and report["every_step_logged_once"] and report["same_losses_every_step"]
