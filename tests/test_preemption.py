"""Ranks agree on a preemption signal one step boundary late, all at the same boundary, over a real gloo group of
two processes: a signal to one rank before boundary k stops both ranks at boundary k + 1."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cyclesr_dist.engine.preemption import PreemptionFlag
from cyclesr_dist.testing import free_port

BOUNDARIES = 6


def _rank(rank: int, port: int, signal_before: int | None, answers: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    flag = PreemptionFlag()
    try:
        seen = []
        for boundary in range(BOUNDARIES):
            if rank == 1 and boundary == signal_before:
                os.kill(os.getpid(), signal.SIGUSR1)
            stop = flag.should_stop(torch.device("cpu"))
            seen.append(stop)
            if stop:
                break
        # a run that ends without a stop waits for the agreement still in flight; nothing is left after it
        seen.append(flag.drain() if not stop else None)
        seen.append(flag.drain())
        answers[rank] = seen
    finally:
        flag.restore()
        dist.destroy_process_group()


def _run(signal_before: int | None) -> dict:
    answers = mp.Manager().dict()
    mp.spawn(_rank, args=(free_port(), signal_before, answers), nprocs=2)
    return dict(answers)


def test_one_rank_signalled_stops_both_one_boundary_later() -> None:
    answers = _run(signal_before=2)
    assert answers[0] == answers[1] == [False, False, False, True, None, False]


def test_no_signal_never_stops_and_drains_what_is_in_flight() -> None:
    answers = _run(signal_before=None)
    assert answers[0] == answers[1] == [False] * BOUNDARIES + [False, False]


def test_a_signal_at_the_last_boundary_is_the_drained_answer() -> None:
    answers = _run(signal_before=BOUNDARIES - 1)
    assert answers[0] == answers[1] == [False] * BOUNDARIES + [True, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the device path needs a CUDA GPU (benchmarks/gpu_perf.sh)")
def test_on_a_gpu_the_agreement_never_waits_for_queued_work() -> None:
    """NCCL needs one GPU per rank, so this runs one rank's reduction (a group of one) through the path the ranks
    take: starting it and reading it at the next boundary leave the work queued after it running."""
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    flag, device, stream = PreemptionFlag(), torch.device("cuda", 0), torch.cuda.current_stream()
    try:
        flag.received = signal.SIGUSR1
        read = flag._start_reduction(device)
        torch.cuda._sleep(2_000_000_000)  # about a second of queued device work: the next step
        assert read() is True
        assert not stream.query(), "reading the agreement waited for the work queued after it"
        read = flag._start_reduction(device)
        assert not stream.query(), "starting the agreement waited for the queued work"
        torch.cuda.synchronize()
        assert read() is True
    finally:
        flag.restore()
        dist.destroy_process_group()
