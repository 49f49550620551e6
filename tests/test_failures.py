"""The launchers' rule for requeueing after a failure (cyclesr_dist/launch/failures.py), shared by slurm/train.sh
and `cyclesr submit`; both are run for real against Slurm in tests/cluster/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cyclesr_dist.launch.failures import record_failure


def test_failures_in_a_row_without_a_new_checkpoint_stop_and_progress_starts_the_count_again(tmp_path: Path) -> None:
    first = record_failure(tmp_path, "7.0", max_failures=2, backoff_s=30)
    assert (first.requeue, first.backoff_s, first.message) == (
        True,
        30,
        "failure 1 in a row; requeueing in 30s from the start",
    )
    again = record_failure(tmp_path, "7.0", max_failures=2, backoff_s=30)  # another rank reporting the same failure
    assert again == first
    assert record_failure(tmp_path, "7.1", max_failures=2, backoff_s=30).backoff_s == 60  # doubled
    stop = record_failure(tmp_path, "7.2", max_failures=2, backoff_s=30)
    assert not stop.requeue and stop.message.startswith("3 failures in a row without a new checkpoint")
    (tmp_path / "checkpoints" / "step-00000500").mkdir(parents=True)  # progress since: the count starts again
    (tmp_path / "checkpoints" / ".partial-step-00000600").mkdir()  # a save cut short is no progress
    after = record_failure(tmp_path, "7.3", max_failures=2, backoff_s=30)
    assert after.requeue and after.message == "failure 1 in a row; requeueing in 30s from step-00000500"
    for attempt in range(4, 20):
        record_failure(tmp_path, f"8.{attempt}", max_failures=100, backoff_s=30)
    assert record_failure(tmp_path, "9.0", max_failures=100, backoff_s=30).backoff_s == 600  # capped


def test_the_command_prints_the_wait_or_exits_1(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "cyclesr_dist.launch.failures",
        str(tmp_path),
        "--max-failures",
        "1",
        "--backoff-s",
        "5",
    ]
    first = subprocess.run([*cmd, "--attempt", "1.0"], capture_output=True, text=True)
    assert (first.returncode, first.stdout.strip()) == (0, "5") and "failure 1 in a row" in first.stderr
    second = subprocess.run([*cmd, "--attempt", "1.1"], capture_output=True, text=True)
    assert second.returncode == 1 and second.stdout == "" and "2 failures in a row" in second.stderr
