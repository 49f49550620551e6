"""`cyclesr` command line. One module per group of sub-commands: each defines its arguments with argparse alone
and imports what does the work inside the function it runs, so `cyclesr --help` loads no torch.

A user's mistake (`errors.UserError`: a config key, a path, a damaged file) ends with one line on stderr and exit
status 2; `--debug` or CYCLESR_DEBUG=1 shows its traceback too. A rank whose peer died or stalled
(`errors.PeerFailure`) ends with one line and exit status 76, which the launchers restart."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import PEER_FAILED, USAGE, PeerFailure, UserError
from . import checkpoints, data, serve, submit, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclesr", description="CycleSR: unpaired super-resolution training job")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors (or CYCLESR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train, data, serve, submit, checkpoints):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        if args.debug or os.environ.get("CYCLESR_DEBUG", "") not in ("", "0"):
            raise
        print(f"cyclesr {args.command}: error: {err}", file=sys.stderr)
        return USAGE
    except PeerFailure as err:  # another rank's failure, not this one's: its traceback says nothing
        print(f"cyclesr {args.command}: {err}", file=sys.stderr, flush=True)
        return PEER_FAILED
