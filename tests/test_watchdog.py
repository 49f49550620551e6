"""Which rank holds the others up, read from the heartbeat files every rank's watchdog writes (the stall itself is
tested for real in test_distributed.py: a SIGSTOPped rank, named by the other's watchdog)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cyclesr_dist.engine.watchdog import rank_behind


def _beat(folder: Path, rank: int, step: int, age_s: float) -> None:
    beat = {"rank": rank, "step": step, "time": time.time() - age_s, "host": f"node{rank + 1}", "pid": 100 + rank}
    (folder / f"rank-{rank}.json").write_text(json.dumps(beat))


def test_the_rank_behind_is_the_silent_one_then_the_one_at_the_oldest_step(tmp_path: Path) -> None:
    for rank in range(3):
        _beat(tmp_path, rank, step=40, age_s=1)
    assert rank_behind(tmp_path, 3, stall_timeout_s=60) == ""  # all alike: nobody to name
    _beat(tmp_path, 1, step=39, age_s=1)
    assert rank_behind(tmp_path, 3, 60) == "rank 1 is behind: at step 39 (on node2, pid 101), the others further"
    _beat(tmp_path, 2, step=40, age_s=45)  # a frozen process or a lost node: its heartbeat stopped
    assert rank_behind(tmp_path, 3, 60).startswith("rank 2 is behind: no heartbeat for 45 s (on node3, pid 102")
    (tmp_path / "rank-0.json").unlink()
    assert rank_behind(tmp_path, 3, 60) == "rank 0 has written no heartbeat"
