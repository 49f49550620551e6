"""Preemption: SIGUSR1/SIGTERM set a flag; the loop agrees on it across ranks at a step boundary, saves, exits."""

from __future__ import annotations

import signal
import types

import torch
import torch.distributed as dist


class PreemptionFlag:
    def __init__(self, signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.received: int | None = None
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        # Only set a flag: a checkpoint is a collective, which a signal handler on one rank cannot run.
        self.received = signum

    def should_stop(self, device: torch.device) -> bool:
        """True on every rank if any rank got a signal (one tiny all-reduce per call). One process asks no tensor:
        reading one back would make the host wait for the device every step."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.received is not None
        flag = torch.tensor([1 if self.received is not None else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
