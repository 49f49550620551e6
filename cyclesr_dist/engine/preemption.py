"""Preemption: SIGUSR1/SIGTERM set a flag; the ranks agree on it at a step boundary, save, exit."""

from __future__ import annotations

import signal
import types
from collections.abc import Callable

import torch
import torch.distributed as dist


class PreemptionFlag:
    """With several processes the ranks agree through an all-reduce started at one step boundary and read at the
    next. By then that step's work (the reduction included) has run, so reading it does not make the host wait for
    the device, and the host keeps queuing one step ahead. The cost: a signal stops the run one step later than an
    immediate check would; every rank reads the same reduction, so all stop after the same step."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.received: int | None = None
        self._pending: Callable[[], bool] | None = None  # the reduction started at the previous boundary
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        # Only set a flag: a checkpoint is a collective, which a signal handler on one rank cannot run.
        self.received = signum

    def should_stop(self, device: torch.device) -> bool:
        """True on every rank if any rank had a signal by the previous call (several processes), or a signal came
        (one process: nothing to agree on, no tensor asked)."""
        if not _several_processes():
            return self.received is not None
        stop = self.drain()
        if not stop:
            self._pending = self._start_reduction(device)
        return stop

    def drain(self) -> bool:
        """Waits for the reduction still in flight, if any (every rank started it): the loop calls this when it
        ends without a stop, so no collective outlives it. Returns its answer."""
        pending, self._pending = self._pending, None
        return pending() if pending is not None else False

    def _start_reduction(self, device: torch.device) -> Callable[[], bool]:
        # `full` fills on the device; `tensor(..., device=)` would copy from pageable memory and wait for it.
        flag = torch.full((1,), int(self.received is not None), dtype=torch.int32, device=device)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)
        if flag.device.type != "cuda":

            def read_host_flag() -> bool:
                work.wait()
                return bool(flag.item())

            return read_host_flag
        # The device's stream waits for the reduction, copies the answer to pinned host memory and marks the
        # point; the next boundary waits for that mark only, which the device has passed by then.
        work.wait()
        answer = torch.empty(1, dtype=flag.dtype, pin_memory=True)
        answer.copy_(flag, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()

        def read_copied_flag() -> bool:
            copied.synchronize()
            return bool(answer.item())

        return read_copied_flag

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _several_processes() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
