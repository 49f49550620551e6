"""`cyclesr train`: the trainer with the CycleSR recipe. `train` is also the entry Submitit and train.py call."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train (or resume) from a YAML config")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(run=run)


def train(config: Any) -> int:
    """Train (or resume) `config` with the CycleSR recipe; the process exit status (errors.OK / PREEMPTED)."""
    from ..cyclesr import CycleSRSpec
    from ..cyclesr.measured import with_measured_recipe
    from ..data.loaders import with_epoch_from_data
    from ..engine.trainer import Trainer

    config = with_measured_recipe(with_epoch_from_data(config))
    return Trainer(config, CycleSRSpec(config)).train()


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    return train(load_config(args.config, args.overrides))
