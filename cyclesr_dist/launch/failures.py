"""When a launcher requeues a failed run, and when it stops: one rule for slurm/train.sh and `cyclesr submit`.

A failure (a rank crashed, or stopped because a peer died or stalled: exit 76) is counted in `<run_dir>/failures`
with the newest complete checkpoint at that moment. A new checkpoint since the previous failure starts the count
again: a long run survives any number of failures spread over its life, while a broken config or node, which fails
fast every time, stops after `max_failures` in a row and waits for a person. Before each requeue the launcher waits
`backoff_s`, doubled per failure in a row (at most 10 minutes), so a flapping node is not hammered.

Several ranks may report the same failure (each survivor of a dead peer does): one attempt id (the job and its
restart count) is counted once.

    python -m cyclesr_dist.launch.failures RUN_DIR --attempt ID [--max-failures 3] [--backoff-s 30]

prints the seconds to wait and exits 0 (requeue), or exits 1 (stop); the reason goes to stderr either way.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_text

MAX_BACKOFF_S = 600.0


@dataclass
class Decision:
    requeue: bool
    backoff_s: float
    message: str


def newest_checkpoint(run_dir: Path) -> str:
    """The newest complete checkpoint's folder name ("" if none); half-written ones are named `.partial-…`."""
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*") if p.is_dir())
    return names[-1] if names else ""


def record_failure(run_dir: str | Path, attempt: str, max_failures: int = 3, backoff_s: float = 30.0) -> Decision:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "failures.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # ranks of one job report at once
        path = run_dir / "failures"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {"count": 0, "newest": None, "attempt": None}
        newest = newest_checkpoint(run_dir)
        if state["attempt"] != attempt:  # a new failure, not another rank's report of this one
            count = 1 if newest != state["newest"] else state["count"] + 1
            state = {"count": count, "newest": newest, "attempt": attempt}
            atomic_write_text(path, json.dumps(state))
    count, since = state["count"], state["newest"] or "the start"
    if count > max_failures:
        return Decision(False, 0.0, f"{count} failures in a row without a new checkpoint (max {max_failures}): stop")
    wait = min(MAX_BACKOFF_S, backoff_s * 2 ** (count - 1))
    return Decision(True, wait, f"failure {count} in a row; requeueing in {wait:g}s from {since}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cyclesr_dist.launch.failures", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--attempt", required=True, help="the job id and its restart count: one failure per attempt")
    p.add_argument("--max-failures", type=int, default=3)
    p.add_argument("--backoff-s", type=float, default=30.0)
    args = p.parse_args(argv)
    decision = record_failure(args.run_dir, args.attempt, args.max_failures, args.backoff_s)
    print(decision.message, file=sys.stderr)
    if decision.requeue:
        print(f"{decision.backoff_s:g}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
