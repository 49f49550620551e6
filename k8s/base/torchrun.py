"""torchrun for CycleSR pods: the same arguments and PET_* defaults, with an exit status a Job can act on.

torchrun exits 1 whenever a worker fails, so the trainer's 75 ("checkpoint saved, restart me") would be lost.
This wrapper exits 75 when a worker exited 75 or when the pod itself was stopped (SIGTERM on preemption, eviction
or drain: torchrun forwards it to the workers, which save and exit), and 1 on any other failure. The Job's
podFailurePolicy then restarts preempted pods without counting them as failures.

    python k8s/base/torchrun.py [torchrun options] train.py --config FILE [key=value ...]

PET_SHUTDOWN_TIMEOUT (torchrun's --shutdown-timeout) must leave the workers time to save after SIGTERM; keep it
below the pod's terminationGracePeriodSeconds.
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from cyclesr_dist.errors import FAILED, OK, PREEMPTED


def main() -> int:
    args = get_args_parser().parse_args()
    try:
        run(args)
    except SignalException as exc:
        print(f"[torchrun.py] stopped by signal {exc.sigval}: exiting {PREEMPTED}", file=sys.stderr, flush=True)
        return PREEMPTED
    except ChildFailedError as exc:
        codes = sorted({failure.exitcode for failure in exc.failures.values()})
        status = PREEMPTED if PREEMPTED in codes else FAILED
        print(f"[torchrun.py] worker exit codes {codes}: exiting {status}", file=sys.stderr, flush=True)
        return status
    return OK


if __name__ == "__main__":
    sys.exit(main())
