"""Engine state inside a checkpoint step directory: `step_dir/deepspeed/<group>/` per engine."""

from __future__ import annotations

from pathlib import Path

from torch import nn

DS_SUBDIR = "deepspeed"  # inside a checkpoint step directory
TAG = "zero"  # DeepSpeed checkpoint tag of every engine (one save per step directory)
UNIVERSAL_TAG = TAG + "_universal"


def save_engines(engines: dict[str, nn.Module], step_dir: str | Path) -> Path:
    """Collective (every rank): each engine writes its weights, its optimizer shard per rank and `latest`. Each
    engine gets its own directory: DeepSpeed's file names do not say which engine wrote them."""
    root = Path(step_dir) / DS_SUBDIR
    for name, engine in engines.items():
        engine.save_checkpoint(str(root / name), tag=TAG, client_state={"group": name}, save_latest=True)
    return root


def load_engines(
    engines: dict[str, nn.Module],
    step_dir: str | Path,
    world_size: int,
    load_optimizer_states: bool = True,
    universal: bool | None = None,
) -> None:
    """Collective. `universal=None`: the universal copy (`universal.convert_to_universal`) when present, else the
    plain one, which needs the world size that saved it."""
    root = Path(step_dir) / DS_SUBDIR
    for name, engine in engines.items():
        directory = root / name
        use_universal = (directory / "latest_universal").is_file() if universal is None else universal
        if not use_universal:
            saved = len(list((directory / TAG).glob("*zero_pp_rank_*_optim_states.pt")))
            if saved and saved != world_size:
                raise RuntimeError(
                    f"{directory} was written by {saved} processes and this run has {world_size}; ZeRO-1/2 "
                    f"optimizer shards do not load at another world size. Convert it once, offline: "
                    f"cyclesr checkpoints to-universal {step_dir}"
                )
        # `load_universal_checkpoint` is what `"checkpoint": {"load_universal": true}` sets; switched per load so
        # one run can resume from either kind.
        previous = engine._config.load_universal_checkpoint
        engine._config.load_universal_checkpoint = use_universal
        try:
            path, _ = engine.load_checkpoint(
                str(directory),
                tag=None,  # `latest` or `latest_universal`
                load_optimizer_states=load_optimizer_states,
                load_lr_scheduler_states=False,
            )
        finally:
            engine._config.load_universal_checkpoint = previous
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {directory}")
