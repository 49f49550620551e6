"""Soak test: a 2-process training run preempted and killed many times at random moments, resuming every time,
against the same run uninterrupted.

    python benchmarks/soak.py --work runs/soak --preemptions 20 --kills 20            # DDP, 2 CPU processes
    python benchmarks/soak.py --work runs/soak-ds --zero-stage 2 --preemptions 3 --kills 2

Each cycle launches `accelerate launch ... train.py` with `checkpoint.resume=auto`, waits a random number of
steps (preemption: SIGTERM or SIGUSR1 to a random rank, then the run must save and exit 75) or a random time
(SIGKILL of every process of the launch, often in the middle of a save: a checkpoint is written every step),
then checks that the newest checkpoint `resume=auto` would pick is intact (`checkpoint_format.verify`), and goes
on until the run has finished. Checked at the end, against the uninterrupted run:
- final weights of every network bitwise equal (`train.deterministic=true`);
- every step logged exactly once, with the same losses, so every batch (hence every data sample) was trained on
  as often as in the uninterrupted run: the data stream resumes exactly, none is repeated or skipped;
- the number of damaged checkpoints resume had to skip, and the work lost per kill (steps since the last
  intact checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import torch  # noqa: E402

from cyclesr_dist.checkpoint_format import latest_checkpoint, load_file, verify  # noqa: E402
from cyclesr_dist.errors import PREEMPTED  # noqa: E402
from cyclesr_dist.testing import read_train_log  # noqa: E402


def overrides(data: Path, out: Path, steps: int) -> list[str]:
    return [
        f"data.root={data}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "data.steps_per_epoch=8",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=3",
        "train.log_every=1",
        "train.val_every_epochs=1000",
        "train.image_every=0",
        "train.deterministic=true",
        "checkpoint.every_steps=1",
        "checkpoint.keep=2",
        "wandb.mode=disabled",
        "data.num_workers=1",
    ]


def launch(args: argparse.Namespace, out: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--main_process_port", str(port)]
    if args.zero_stage:
        cmd += ["--config_file", str(REPO / "configs" / "accelerate" / f"deepspeed_zero{args.zero_stage}.yaml")]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["train.py", "--config", "configs/demo.yaml", *overrides(Path(args.data), out, args.steps)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(launches_log(out), "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def launches_log(out: Path) -> Path:
    return out.parent / f"{out.name}.launches.log"


def preempted_exits(out: Path) -> int:
    """How many times a rank has logged its preemption exit in this run's launches."""
    log = launches_log(out)
    return log.read_text(errors="replace").count(f"exiting with {PREEMPTED}") if log.is_file() else 0


def steps_this_launch(out: Path, offset: int) -> list[int]:
    """Steps this launch has trained (its log lines past `offset`). Not train_log.jsonl: until the resumed run
    truncates it, that still holds the steps a killed launch trained past its last checkpoint."""
    with open(launches_log(out), "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [int(m) for m in re.findall(r"^step=(\d+) ", text, flags=re.M)]


def steps_logged(out: Path) -> list[int]:
    return [row["step"] for row in read_train_log(out)]


def workers(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        children = psutil.Process(proc.pid).children()  # the ranks; their data-loader workers are grandchildren
        return [c for c in children if "train.py" in " ".join(c.cmdline())]
    except psutil.Error:  # the launch (or a rank) is gone
        return []


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it, as a node failure would: torchrun starts each rank in a
    session of its own, so killing the launcher's process group alone leaves the ranks training on."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(tree, timeout=30)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(out / "checkpoints")
    weights = {}
    for group in ckpt.meta["groups"]:
        for net, sd in load_file(ckpt.path / f"group-{group}.pt")["nets"].items():
            weights |= {f"{net}.{k}": v for k, v in sd.items()}
    return weights


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r.get("loss/SR", r.get("loss/G")) for r in read_train_log(out)}


def soak(args: argparse.Namespace, out: Path, rng: random.Random) -> dict:
    plan = ["preempt"] * args.preemptions + ["kill"] * args.kills
    rng.shuffle(plan)
    events, port, t0 = [], 29500 + rng.randrange(2000), time.time()
    for action in [*plan, "finish"]:
        port += 1
        before = latest_checkpoint(out / "checkpoints")
        start = before.step if before else 0
        if start >= args.steps:
            break
        preempted_before = preempted_exits(out)
        log_offset = launches_log(out).stat().st_size if launches_log(out).is_file() else 0
        proc = launch(args, out, port)
        event = {"action": action, "from_step": start}
        if action == "preempt":
            target = start + rng.randint(1, 4)
            while proc.poll() is None and max(steps_this_launch(out, log_offset), default=0) < target:
                time.sleep(0.05)
            ranks = workers(proc)
            while len(ranks) < 2 and proc.poll() is None:  # a rank not yet listed by the OS
                time.sleep(0.02)
                ranks = workers(proc)
            event["ranks_seen"] = len(ranks)
            if ranks and proc.poll() is None:
                sig = rng.choice([signal.SIGTERM, signal.SIGUSR1])
                victim = rng.randrange(len(ranks))
                ranks[victim].send_signal(sig)
                event.update(signal=signal.Signals(sig).name, rank=victim)
            event["exit"] = proc.wait(timeout=600)
            # torchrun reports any rank's non-zero exit as its own 1; the ranks' own exit is in their log lines
            if event["exit"] != 0 and preempted_exits(out) <= preempted_before:
                raise SystemExit(f"preempted run exited {event['exit']} without saving; see {launches_log(out)}")
        elif action == "kill":
            # Wait for training to be under way (past start-up), then kill: every other kill the moment a save's
            # `.partial-*` folder appears (plus 0-20 ms, so at different points of writing it), the others at a
            # random moment of the next steps (a checkpoint is written every step, so some land in a save too).
            while proc.poll() is None and not steps_this_launch(out, log_offset):
                time.sleep(0.02)
            event["aimed_at_save"] = rng.random() < 0.5
            if event["aimed_at_save"]:
                deadline = time.time() + 10 * args.kill_window
                while time.time() < deadline and not list((out / "checkpoints").glob(".partial-*")):
                    time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.02))
            else:
                time.sleep(rng.uniform(0.0, args.kill_window))
            kill_tree(proc)
            event["partial_save_present"] = bool(list((out / "checkpoints").glob(".partial-*")))
        else:
            event["exit"] = proc.wait(timeout=1800)
        after = latest_checkpoint(out / "checkpoints")
        event["to_step"] = after.step if after else 0
        event["logged_max"] = max(steps_logged(out), default=0)
        event["latest_intact"] = after is not None and not verify(after)
        if not event["latest_intact"]:
            raise SystemExit(f"after {action}: the newest checkpoint is damaged: {verify(after) if after else None}")
        events.append(event)
        print(json.dumps(event), flush=True)
    return {"events": events, "wall_s": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(REPO / "runs" / "soak"))
    p.add_argument("--data", default=None, help="demo data folder (default: built under --work)")
    p.add_argument("--steps", type=int, default=160, help="training steps of the run")
    p.add_argument("--preemptions", type=int, default=20)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--kill-window", type=float, default=3.0, help="seconds after a step within which to SIGKILL")
    p.add_argument("--zero-stage", type=int, default=0, help="DeepSpeed ZeRO stage (0: DDP)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        from cyclesr_dist.data.demo import build_demo_data

        args.data = str(work / "demo")
        if not (work / "demo" / "manifest.json").is_file():
            build_demo_data(args.data)
    straight = work / "straight"
    if (
        latest_checkpoint(straight / "checkpoints") is None
        or latest_checkpoint(straight / "checkpoints").step < args.steps
    ):
        t0 = time.time()
        code = launch(args, straight, 29400).wait()
        if code != 0:
            raise SystemExit(f"the uninterrupted run failed ({code})")
        print(f"uninterrupted run: {time.time() - t0:.0f}s", flush=True)
    soaked = work / "soaked"
    report = soak(args, soaked, random.Random(args.seed))
    a, b = final_weights(straight), final_weights(soaked)
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    logged = steps_logged(soaked)
    la, lb = losses(straight), losses(soaked)
    report |= {
        "steps": args.steps,
        "zero_stage": args.zero_stage,
        "weights_bitwise_equal": not differing and a.keys() == b.keys(),
        "differing_tensors": differing[:10],
        "every_step_logged_once": logged == list(range(1, args.steps + 1)),
        "same_losses_every_step": all(la.get(s) == lb.get(s) for s in range(1, args.steps + 1)),
        "damaged_checkpoints_skipped": len(list((soaked / "checkpoints").glob(".damaged-*"))),
        "kills_during_a_save": sum(e.get("partial_save_present", False) for e in report["events"]),
        "steps_lost_per_kill": [e["logged_max"] - e["to_step"] for e in report["events"] if e["action"] == "kill"],
    }
    (work / "soak.json").write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k != "events"}
    print(json.dumps(summary, indent=2))
    ok = report["weights_bitwise_equal"] and report["every_step_logged_once"] and report["same_losses_every_step"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
