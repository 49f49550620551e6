"""Offline conversion of a checkpoint's ZeRO shards to DeepSpeed's universal format (loads at any world size)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .checkpoint import DS_SUBDIR, TAG, UNIVERSAL_TAG


def convert_to_universal(step_dir: str | Path, workers: int = 1) -> list[Path]:
    """Convert every engine checkpoint under `step_dir/deepspeed/` to DeepSpeed's universal format.

    Offline, in one process, after the saving job ended (needs no GPU and no process group). Per group it runs
    `python -m deepspeed.checkpoint.ds_to_universal --input_folder <group>/zero --output_folder
    <group>/zero_universal --inject_missing_state` (without `--inject_missing_state` the converter asserts on
    the missing `universal_checkpoint_info`), which also writes `<group>/latest_universal`. `load` prefers the
    universal copy, which loads at any world size (the optimizer state is re-partitioned).
    """
    root = Path(step_dir) / DS_SUBDIR
    groups = sorted(p for p in root.iterdir() if (p / TAG).is_dir()) if root.is_dir() else []
    if not groups:
        raise FileNotFoundError(f"no DeepSpeed engine checkpoints under {root}")
    done = []
    for directory in groups:
        cmd = [
            sys.executable,
            "-m",
            "deepspeed.checkpoint.ds_to_universal",
            "--input_folder",
            str(directory / TAG),
            "--output_folder",
            str(directory / UNIVERSAL_TAG),
            "--inject_missing_state",
            "--num_extract_workers",
            str(workers),
            "--num_merge_workers",
            str(workers),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not (directory / "latest_universal").is_file():
            raise RuntimeError(
                f"ds_to_universal failed for {directory}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        done.append(directory / UNIVERSAL_TAG)
    return done
