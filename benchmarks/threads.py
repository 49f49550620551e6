"""Two trainers side by side on one machine: torch's default threads (every process takes every core it sees —
the trainer's behaviour before `engine/threads.py`) against the trainer's own sizing from what each was granted
(here `SLURM_CPUS_PER_TASK` = cores / 2, as Slurm would set for two 1-task jobs sharing the node).

    python benchmarks/threads.py --work runs/threads [--steps 40]

Each configuration trains the demo config for --steps steps (validation and images off) and reports the median
samples/s of its logged steps after the first 10 (start-up excluded); one trainer alone is the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cyclesr_dist.testing import read_train_log  # noqa: E402


def launch(out: Path, data: Path, steps: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", "configs/demo.yaml"]
    cmd += [f"data.root={data}", f"output_dir={out}", f"max_steps={steps}", "train.log_every=1"]
    cmd += ["train.val_every_epochs=1000", "train.image_every=0", "checkpoint.every_steps=0", "wandb.mode=disabled"]
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 - closed when the process ends
    return subprocess.Popen(cmd, cwd=REPO, env=full_env | env, stdout=log, stderr=subprocess.STDOUT)


def rate(out: Path) -> float:
    rows = read_train_log(out)
    return statistics.median(r["samples_per_s"] for r in rows if r["step"] > 10 and "samples_per_s" in r)


def run(work: Path, data: Path, steps: int, name: str, envs: list[dict[str, str]]) -> list[float]:
    outs = [work / f"{name}-{i}" for i in range(len(envs))]
    procs = [launch(out, data, steps, env) for out, env in zip(outs, envs, strict=True)]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{name}: a trainer failed; see {work}/{name}-*.log")
    return [rate(out) for out in outs]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(REPO / "runs" / "threads"))
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "demo"
    if not (data / "manifest.json").is_file():
        from cyclesr_dist.data.demo import build_demo_data

        build_demo_data(str(data))
    cores = len(os.sched_getaffinity(0))
    half = str(max(1, cores // 2))
    results = {
        "cores": cores,
        "one trainer alone (own sizing)": run(work, data, args.steps, "alone", [{}]),
        f"two side by side, torch default ({cores} threads each)": run(
            work, data, args.steps, "default", [{"OMP_NUM_THREADS": str(cores)}] * 2
        ),
        f"two side by side, own sizing (SLURM_CPUS_PER_TASK={half})": run(
            work, data, args.steps, "sized", [{"SLURM_CPUS_PER_TASK": half}] * 2
        ),
    }
    (work / "threads.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
