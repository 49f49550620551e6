"""A watchdog for stalls: a rank that completes no step for `dist.stall_timeout_s` writes the Python stacks of
all its threads to the run folder, names the rank that is behind, and exits restartable (PEER_FAILED).

Every rank's watchdog thread also writes a heartbeat file (`<output_dir>/heartbeat/rank-<r>.json`: last completed
step, wall time, host, pid) every few seconds, so any rank can tell which peer is behind: the one with the oldest
step, or whose heartbeat stopped (its process is frozen or its node is gone). Files on the run folder, not the
process group's store: the checkpoints already need a folder every node sees, and an operator can read them.
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import PEER_FAILED

HEARTBEAT = "heartbeat"


class StallWatchdog:
    def __init__(self, output_dir: Path, rank: int, world_size: int, stall_timeout_s: float) -> None:
        self.folder = Path(output_dir) / HEARTBEAT
        self.rank, self.world_size, self.stall_timeout_s = rank, world_size, stall_timeout_s
        self.interval_s = min(10.0, stall_timeout_s / 4)
        self._step, self._since = 0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def start(self, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.progress(step)
        self._beat()
        self._thread.start()

    def progress(self, step: int) -> None:
        """The loop completed `step` (or a save, a validation): the clock starts again."""
        self._step, self._since = step, time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        beat = {"rank": self.rank, "step": self._step, "time": time.time(), "host": socket.gethostname()}
        atomic_write_text(self.folder / f"rank-{self.rank}.json", json.dumps(beat | {"pid": os.getpid()}))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()
            stalled = time.monotonic() - self._since
            if stalled > self.stall_timeout_s and not self._stop.is_set():
                self._give_up(stalled)

    def _give_up(self, stalled: float) -> None:
        stacks = self.folder / f"stacks-rank-{self.rank}.txt"
        with open(stacks, "w") as f:
            faulthandler.dump_traceback(file=f, all_threads=True)
        message = (
            f"[watchdog] rank {self.rank}/{self.world_size}: no step completed for {stalled:.0f} s "
            f"(dist.stall_timeout_s={self.stall_timeout_s:g}) after step {self._step}; its stacks are in {stacks}"
        )
        behind = rank_behind(self.folder, self.world_size, self.stall_timeout_s)
        if behind:
            message += f"; {behind}"
        print(f"{message}; exiting with {PEER_FAILED}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # From this thread: the main thread is the one that is stuck, in a collective or a read it cannot leave.
        os._exit(PEER_FAILED)


def read_heartbeats(folder: Path, world_size: int) -> dict[int, dict[str, Any] | None]:
    beats: dict[int, dict[str, Any] | None] = {}
    for rank in range(world_size):
        try:
            beats[rank] = json.loads((folder / f"rank-{rank}.json").read_text())
        except (OSError, ValueError):
            beats[rank] = None
    return beats


def rank_behind(folder: Path, world_size: int, stall_timeout_s: float) -> str:
    """Which rank holds the others up, from the heartbeat files: one without a heartbeat, one whose heartbeat
    stopped (frozen, or its node gone), else the one with the oldest completed step. "" when all look alike."""
    beats, now = read_heartbeats(folder, world_size), time.time()
    missing = [r for r, b in beats.items() if b is None]
    if missing:
        return f"rank {missing[0]} has written no heartbeat"
    silent = {r: now - b["time"] for r, b in beats.items() if now - b["time"] > min(30.0, stall_timeout_s / 2)}
    if silent:
        r = max(silent, key=silent.__getitem__)
        b = beats[r]
        where = f"on {b['host']}, pid {b['pid']}, step {b['step']}"
        return f"rank {r} is behind: no heartbeat for {silent[r]:.0f} s ({where})"
    steps = {r: b["step"] for r, b in beats.items()}
    low = min(steps, key=steps.__getitem__)
    if steps[low] < max(steps.values()):
        b = beats[low]
        return f"rank {low} is behind: at step {b['step']} (on {b['host']}, pid {b['pid']}), the others further"
    return ""
