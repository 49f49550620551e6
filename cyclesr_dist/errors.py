"""Exit statuses of every cyclesr process, in one table, and the error type for a user's mistake.

Used by the trainer, the CLI, the launchers (Submitit; the k8s torchrun wrapper and slurm/train.sh read them with
`python -m cyclesr_dist.errors NAME`) and the tests.
"""

from __future__ import annotations

import sys

OK = 0
FAILED = 1  # a bug or an environment failure: the traceback is worth reading
USAGE = 2  # the user's input is wrong (config, paths, data, checkpoints): one line says what and how to fix it
# EX_TEMPFAIL from sysexits.h, "try again later": a checkpoint was saved on a stop request, so the launcher should
# requeue or restart the job, which then resumes from that checkpoint.
PREEMPTED = 75
# EX_PROTOCOL from sysexits.h: a collective failed or timed out (a peer process died, its node was cut off, or it
# stalled past `dist.timeout_s`). Nothing was saved; the launcher should restart the job, which resumes from the
# newest intact checkpoint. Counted as a failure, unlike a preemption.
PEER_FAILED = 76

CODES = {"OK": OK, "FAILED": FAILED, "USAGE": USAGE, "PREEMPTED": PREEMPTED, "PEER_FAILED": PEER_FAILED}


class UserError(Exception):
    """Bad input from the user. The CLI prints the message alone (no traceback) and exits with USAGE. The message
    names what is wrong and how to fix it."""


class PeerFailure(Exception):
    """A collective failed or timed out on this rank because of another rank (see PEER_FAILED). The CLI prints
    the message alone (rank, step, what was running, the transport's words) and exits with PEER_FAILED."""


class InputNotFound(UserError, FileNotFoundError):
    """A file, folder or URL the user named does not exist or cannot be reached."""


class BadInput(UserError, ValueError):
    """A value or a file the user gave cannot be used (wrong size, wrong format, contradictory settings)."""


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CODES:
        print(f"usage: python -m cyclesr_dist.errors {{{','.join(CODES)}}}", file=sys.stderr)
        sys.exit(USAGE)
    print(CODES[sys.argv[1]])
