"""Failure soak: a two-node run (two Slurm nodes in network namespaces of this machine, the test cluster of
tests/cluster/) whose rank on node 2 is killed, frozen or cut off again and again at random steps, restarting by
itself every time, against the same run uninterrupted.

    python benchmarks/failure_soak.py --events 10                # 10 of each kind, shuffled (root; ~40 min)
    python benchmarks/failure_soak.py --events 1 --steps 60      # one of each: a rehearsal

The job is `sbatch slurm/train.sh` on the demo config (one CPU process per node, a checkpoint every
--every steps, `dist.timeout_s` --timeout-s, no back-off). Each event waits for a random step in the current run,
then: `kill` SIGKILLs node 2's training process, `stop` SIGSTOPs it, `cut` pulls node 2's link (put back once node
1 has given up). Measured per event, from the run's own log: time to detect (the event to node 1's rank giving up
with its line, or to the launcher's "training failed" for a kill), time to resume (the event to the next run's
"resumed from"), and the steps lost (the event's step minus the checkpoint it resumed from). At the end: the
final weights against an uninterrupted run's, bit for bit, and every step logged once.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tests" / "cluster"):
    sys.path.insert(0, str(path))

import torch  # noqa: E402
from cluster_helpers import FINAL_STATES, logged_steps, python_env, read_text, worker_on  # noqa: E402
from netns_cluster import NetnsSlurmCluster, NodeNetwork  # noqa: E402

from cyclesr_dist.testing import checkpoint_weights  # noqa: E402

KINDS = ("kill", "stop", "cut")
GAVE_UP = "cyclesr train: rank 0/2: "  # node 1 gave up, in a step, the preemption agreement or a save
WHOLE = 10**12  # read_text's tail: the whole log, whose length marks where an event's lines start


def sbatch(cluster: NetnsSlurmCluster, run_dir: Path, data: Path, args: argparse.Namespace) -> int:
    overrides = [
        f"data.root={data}",
        f"max_steps={args.steps}",
        f"checkpoint.every_steps={args.every}",
        "data.steps_per_epoch=20",
        "data.num_workers=0",
        "train.log_every=1",
        "train.image_every=0",
        "train.val_every_epochs=1000",
        "train.deterministic=true",
        "wandb.mode=disabled",
        f"dist.timeout_s={args.timeout_s}",
    ]
    run_dir.parent.mkdir(parents=True, exist_ok=True)  # sbatch's own output goes there
    env = {"CPU": "1", "NPROC_PER_NODE": "1", "RUN_DIR": str(run_dir), "OMP_NUM_THREADS": "1"}
    env |= {"FAILURE_BACKOFF_S": "0", "MAX_FAILURES": "3"}
    return cluster.sbatch(
        "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--time=120",
        f"--output={run_dir.parent / 'sbatch-%j.out'}", str(REPO / "slurm" / "train.sh"),
        "--config", str(REPO / "configs" / "demo.yaml"), *overrides,
        env=python_env(env), cwd=REPO,
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def last_step(run_dir: Path) -> int:
    return max(logged_steps(run_dir), default=0)


def event(cluster: NetnsSlurmCluster, run_dir: Path, out: Path, kind: str, at: int, timeout_s: float) -> dict:
    """One failure at step >= `at` of the current run; returns what the log says about detection and resume."""
    wait_for(lambda: last_step(run_dir) >= at, 600, f"step {at}")
    worker = worker_on("node2", run_dir)
    if worker is None:
        raise RuntimeError("no training process on node2")
    before = read_text(out, tail=WHOLE)
    step = last_step(run_dir)
    t0 = time.monotonic()
    if kind == "kill":
        worker.kill()
    elif kind == "stop":
        worker.send_signal(signal.SIGSTOP)
    else:
        cluster.network.set_link("node2", up=False)
    marker = "training failed" if kind == "kill" else GAVE_UP
    try:
        wait_for(lambda: marker in read_text(out, tail=WHOLE)[len(before) :], timeout_s + 120, f"{kind}: detection")
        detect = time.monotonic() - t0
    finally:
        if kind == "cut":
            cluster.network.set_link("node2", up=True)
    wait_for(lambda: "resumed from" in read_text(out, tail=WHOLE)[len(before) :], 600, f"{kind}: resume")
    resumed = time.monotonic() - t0
    found = re.search(r"resumed from \S+ at step (\d+)", read_text(out, tail=WHOLE)[len(before) :])
    checkpoint = int(found[1]) if found else -1
    return {"kind": kind, "step": step, "detect_s": detect, "resume_s": resumed, "lost_steps": step - checkpoint}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(REPO / "runs" / "failure-soak"))
    p.add_argument("--events", type=int, default=10, help="events of each kind")
    p.add_argument("--steps", type=int, default=0, help="steps of the run (default: room for every event)")
    p.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    p.add_argument("--timeout-s", type=float, default=20.0, help="dist.timeout_s")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # room for every event: each comes 1 to `every` steps after the first checkpoint of the run it interrupts
    # (so the launcher sees progress between failures), and loses up to `every` steps
    args.steps = args.steps or 3 * args.every * len(KINDS) * args.events + 2 * args.every
    work = Path(args.work).resolve()  # the daemons in the namespaces run elsewhere: absolute paths
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    kinds = [k for k in KINDS for _ in range(args.events)]
    rng.shuffle(kinds)
    data = work / "demo"
    if not data.is_dir():
        subprocess.run([sys.executable, "-m", "cyclesr_dist.cli", "demo-data", str(data)], check=True)
    for folder in ("netns", "slurm"):
        (work / folder).mkdir(exist_ok=True)
    network = NodeNetwork(work / "netns").create()
    cluster = NetnsSlurmCluster(network, work / "slurm")
    try:
        cluster.start()
        straight = work / "straight" / "run"
        job = sbatch(cluster, straight, data, args)
        info = cluster.wait_state(job, FINAL_STATES, timeout=3600)
        if info["JobState"] != "COMPLETED" or int(info["Restarts"]):
            raise RuntimeError(f"the uninterrupted run ended {info['JobState']} after {info['Restarts']} restarts")
        run_dir = work / "soak" / "run"
        job = sbatch(cluster, run_dir, data, args)
        out = run_dir / f"slurm-{job}.out"
        wait_for(out.exists, 300, "the job's output")
        events = []
        for kind in kinds:
            # past the next checkpoint of this run, so that every failure comes after progress
            at = (last_step(run_dir) // args.every + 1) * args.every + rng.randint(1, args.every)
            if at >= args.steps:
                break
            events.append(event(cluster, run_dir, out, kind, at, args.timeout_s))
            print(json.dumps(events[-1]), flush=True)
        info = cluster.wait_state(job, FINAL_STATES, timeout=3600)
        a, b = checkpoint_weights(straight), checkpoint_weights(run_dir)
        equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        once = logged_steps(run_dir) == list(range(1, args.steps + 1))
    finally:
        cluster.stop()
        network.destroy()
    summary = {"args": vars(args), "events": events, "state": info["JobState"], "restarts": int(info["Restarts"])}
    summary |= {"bitwise_equal": equal, "every_step_once": once}
    (work / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nfinal state {info['JobState']}, {info['Restarts']} restarts; weights bitwise equal to the uninterrupted")
    print(f"run: {equal}; every step logged once: {once}\n")
    print(
        "| event | n | time to detect, s (median, max) | time to resume, s (median, max) | steps lost (median, max) |"
    )
    print("|---|---:|---|---|---|")
    for kind in KINDS:
        rows = [e for e in events if e["kind"] == kind]
        if rows:
            cells = [
                f"{statistics.median(v):.1f}, {max(v):.1f}"
                for v in ([e["detect_s"] for e in rows], [e["resume_s"] for e in rows], [e["lost_steps"] for e in rows])
            ]
            print(f"| {kind} | {len(rows)} | " + " | ".join(cells) + " |")
    return 0 if equal and once and info["JobState"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
