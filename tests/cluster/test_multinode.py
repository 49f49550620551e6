"""Multi-node, really run: slurm/train.sh, `cyclesr submit` and the k8s Indexed Job's command on two nodes.

The nodes are two network namespaces of this machine (netns_cluster.py), each with its own address, host name and
slurmd; the ranks talk gloo over the bridge. The trainer runs on the demo config at a few steps with one process
per node (each node offers 1 CPU). DDP and DeepSpeed ZeRO-2 runs are preempted, requeued and resumed on both nodes
and must end bitwise equal to an uninterrupted two-node run, and so must a DDP run whose rank on node 2 is killed
or stalls; a two-node checkpoint must resume on one node.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from cluster_helpers import (
    FAKE_TRAIN,
    FINAL_STATES,
    REPO,
    fake_config,
    job_diagnostics,
    job_running,
    latest_checkpoint,
    logged_steps,
    python_env,
    read_text,
    wait_for_step,
    worker_on,
)
from netns_cluster import IFACE
from test_k8s import K8S, by_kind, render

from cyclesr_dist.checkpoint_format import read_checkpoint
from cyclesr_dist.testing import checkpoint_weights, read_train_log

pytestmark = pytest.mark.slow

TRAIN_SH = REPO / "slurm" / "train.sh"
# ZeRO-2 with the multi-node flags from train.sh; multinode_template.yaml is the same plus bf16, which on CPU is
# several times slower (torch_autocast on CPUs without bf16 units) and changes nothing the test checks.
DEEPSPEED = REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml"
# DDP: 6 steps per stage (translation, SR pre-training, joint); the preemption test signals at step 2, so the 16
# steps left (~0.3 s each) are the room the USR1 relay has to arrive before the job would end on its own.
STEPS = 18
DS_STEPS = 6  # DeepSpeed: 2 per stage; a ZeRO-2 step of the four engines takes ~7 s on these CPUs (DDP: ~0.3 s)


def _overrides(demo_data: Path, steps: int, every: int = 6, steps_per_epoch: int = 4) -> list[str]:
    """The demo config at a few steps: translation, SR pre-training and joint stages, every step logged."""
    return [
        f"data.root={demo_data}",
        f"max_steps={steps}",
        f"checkpoint.every_steps={every}",
        f"data.steps_per_epoch={steps_per_epoch}",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=3",
        "data.num_workers=0",
        "train.log_every=1",
        "train.image_every=0",
        "train.val_every_epochs=100",
        "train.deterministic=true",
        "wandb.mode=disabled",
    ]


def _sbatch(slurm2, run_dir: Path, overrides: list[str], nodes: int = 2, **env: str) -> int:
    """`sbatch --nodes=N --ntasks-per-node=1 slurm/train.sh` on the CPU path, one process per node."""
    env = python_env({"CPU": "1", "NPROC_PER_NODE": "1", "RUN_DIR": str(run_dir), "OMP_NUM_THREADS": "1", **env})
    return slurm2.sbatch(
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        "--gpus-per-node=0",  # the script's default asks for 8 GPUs per node
        "--time=30",
        f"--output={run_dir.parent / 'sbatch-%j.out'}",
        str(TRAIN_SH),
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        *overrides,
        env=env,
        cwd=REPO,
    )


def _finish(slurm2, run_dir: Path, job: int) -> tuple[dict[str, str], str, str]:
    info = slurm2.wait_state(job, FINAL_STATES, timeout=300)
    return info, read_text(run_dir / f"slurm-{job}.out", tail=100_000), job_diagnostics(slurm2, run_dir, job)


def _straight_run(slurm2, demo_data: Path, run_dir: Path, steps: int, **env: str) -> tuple[Path, str, str]:
    """An uninterrupted two-node run; returns (run dir, job output, diagnostics)."""
    job = _sbatch(slurm2, run_dir, _overrides(demo_data, steps, steps_per_epoch=steps // 3), **env)
    info, out, diag = _finish(slurm2, run_dir, job)
    assert info["JobState"] == "COMPLETED", diag
    return run_dir, out, diag


def _assert_two_nodes(out: str, slurm2, diag: str, runs: int = 1) -> None:
    """Rank 0 ran on node1 and rank 1 on node2 (host names of different namespaces), ``runs`` times."""
    assert out.count("rank 0/2 on node1") == runs and out.count("rank 1/2 on node2") == runs, diag
    assert f"nodes=2 procs/node=1 main={slurm2.network.addr['node1']}:" in out, diag  # NodeAddr, not the name


def _preempted_run(slurm2, demo_data: Path, run_dir: Path, steps: int, **env: str) -> tuple[str, str]:
    """USR1 to the batch shell at step >= 2 -> the trap relays it -> both ranks save -> requeue -> resume."""
    job = _sbatch(slurm2, run_dir, _overrides(demo_data, steps, every=100, steps_per_epoch=steps // 3), **env)
    diag = lambda: job_diagnostics(slurm2, run_dir, job)  # noqa: E731
    wait_for_step(run_dir, 2, timeout=240, alive=job_running(slurm2, job), what=diag)
    slurm2.run("scancel", "--signal=USR1", "--batch", str(job))
    info, out, diagnostics = _finish(slurm2, run_dir, job)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, diagnostics
    assert "preempted at step" in out and "resumed from" in out, diagnostics
    assert logged_steps(run_dir) == list(range(1, steps + 1)), f"a step trained twice or skipped{diagnostics}"
    _assert_two_nodes(out, slurm2, diagnostics, runs=2)
    return out, diagnostics


def _assert_bitwise_equal(a: Path, b: Path, diag: str) -> None:
    wa, wb = checkpoint_weights(a), checkpoint_weights(b)
    assert wa.keys() == wb.keys(), diag
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ[:5]}{diag}"


def _resume_on_one_node(slurm2, demo_data: Path, source: Path, run_dir: Path, steps: int, **env: str) -> str:
    """The two-node run's checkpoints (at ``steps``), continued for 1 more step by one process on one node."""
    shutil.copytree(source / "checkpoints", run_dir / "checkpoints")
    job = _sbatch(slurm2, run_dir, _overrides(demo_data, steps + 1, steps_per_epoch=steps // 3), nodes=1, **env)
    info, out, diag = _finish(slurm2, run_dir, job)
    assert info["JobState"] == "COMPLETED", diag
    assert f"at step {steps} (written by 2 processes)" in out and "rank 0/1 on node" in out, diag
    assert logged_steps(run_dir) == [steps + 1], diag
    assert read_checkpoint(run_dir / "checkpoints" / f"step-{steps + 1:08d}").meta["world_size"] == 1, diag
    return diag


# ------------------------------------------------------------------------------------------------ DDP
@pytest.fixture(scope="module")
def ddp_straight(slurm2, demo_data, tmp_path_factory) -> tuple[Path, str, str]:
    return _straight_run(slurm2, demo_data, tmp_path_factory.mktemp("ddp-straight") / "run", STEPS)


def test_ddp_trains_across_two_nodes(ddp_straight, slurm2):
    run_dir, out, diag = ddp_straight
    _assert_two_nodes(out, slurm2, diag)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1)), diag
    assert latest_checkpoint(run_dir) == f"step-{STEPS:08d}", diag
    ckpt = read_checkpoint(run_dir / "checkpoints" / f"step-{STEPS:08d}")
    assert ckpt.meta["world_size"] == 2, diag
    assert sorted(p.name for p in ckpt.path.glob("rank-*")) == ["rank-0.pt", "rank-1.pt"], diag


def test_ddp_usr1_on_two_nodes_resumes_bitwise(ddp_straight, slurm2, demo_data, tmp_path):
    run_dir = tmp_path / "run"
    _, diag = _preempted_run(slurm2, demo_data, run_dir, STEPS)
    _assert_bitwise_equal(ddp_straight[0], run_dir, diag)


def test_ddp_two_node_checkpoint_resumes_on_one_node(ddp_straight, slurm2, demo_data, tmp_path):
    _resume_on_one_node(slurm2, demo_data, ddp_straight[0], tmp_path / "run", STEPS)


# ------------------------------------------------------------------------------------- a rank that dies
@pytest.mark.parametrize("event", ["kill", "stop"])
def test_ddp_rank_killed_or_stalled_on_node2_requeues_and_ends_bitwise(
    ddp_straight, slurm2, demo_data, tmp_path, event
):
    """Node 2's training process SIGKILLed (a crash) or SIGSTOPped (a stall: node 1's watchdog sees no step for
    dist.stall_timeout_s, writes its stacks, names node 2's rank and exits 76) right after the checkpoint at step 6:
    srun ends the step, slurm/train.sh counts a failure and requeues the job, which resumes from step 6 on both
    nodes and ends bitwise equal to the uninterrupted run, every step logged once. (The collective timeout on two
    nodes: the cut-off test below.)"""
    run_dir, timeout_s, stall_s = tmp_path / "run", 20, 10
    overrides = [*_overrides(demo_data, STEPS, steps_per_epoch=STEPS // 3), f"dist.timeout_s={timeout_s}"]
    overrides.append(f"dist.stall_timeout_s={stall_s}")
    job = _sbatch(slurm2, run_dir, overrides, FAILURE_BACKOFF_S="0")
    diag = lambda: job_diagnostics(slurm2, run_dir, job)  # noqa: E731
    wait_for_step(run_dir, 7, timeout=240, alive=job_running(slurm2, job), what=diag)
    worker = worker_on("node2", run_dir)
    assert worker is not None, diag()
    worker.send_signal(signal.SIGKILL if event == "kill" else signal.SIGSTOP)
    info, out, diagnostics = _finish(slurm2, run_dir, job)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) == 1, diagnostics
    assert "failure 1 in a row; requeueing in 0s from step-00000006" in out, diagnostics
    assert "at step 6 (written by 2 processes)" in out, diagnostics
    if event == "stop":  # node 1's watchdog: how long, where its stacks are, who is behind and where
        assert "[watchdog] rank 0/2: no step completed for" in out and f"(dist.stall_timeout_s={stall_s})" in out
        assert "rank 1 is behind: no heartbeat for" in out and f"(on node2, pid {worker.pid}, step" in out, diagnostics
        # rank 0 waits in a collective of its training step: the gradient all-reduce in the backward, or, when node 2
        # stopped before a stage's second step, the bucket rebuild DDP does before that step's forward
        stacks = (run_dir / "heartbeat" / "stacks-rank-0.txt").read_text()
        assert "train_step" in stacks and ("backward" in stacks or "_pre_forward" in stacks), diagnostics + stacks
    assert logged_steps(run_dir) == list(range(1, STEPS + 1)), f"a step trained twice or skipped{diagnostics}"
    _assert_two_nodes(out, slurm2, diagnostics, runs=2)
    _assert_bitwise_equal(ddp_straight[0], run_dir, diagnostics)


def test_ddp_node2_cut_off_mid_run_node1_stops_in_time_and_the_job_resumes_bitwise(
    ddp_straight, slurm2, demo_data, tmp_path
):
    """Node 2's link pulled right after the checkpoint at step 6 (no process dies, no connection closes): node 1's
    rank stops after dist.timeout_s with one line and exit 76. The cable goes back in once it has; the job
    requeues itself, resumes from step 6 on both nodes and ends bitwise equal to the uninterrupted run."""
    run_dir, timeout_s = tmp_path / "run", 20
    overrides = [*_overrides(demo_data, STEPS, steps_per_epoch=STEPS // 3), f"dist.timeout_s={timeout_s}"]
    job = _sbatch(slurm2, run_dir, overrides, FAILURE_BACKOFF_S="0")
    diag = lambda: job_diagnostics(slurm2, run_dir, job)  # noqa: E731
    wait_for_step(run_dir, 7, timeout=240, alive=job_running(slurm2, job), what=diag)
    slurm2.network.set_link("node2", up=False)
    cut, line = time.monotonic(), "rank 0/2: the training step (gradients all-reduced in backward) at step"
    try:
        while (
            line not in read_text(run_dir / f"slurm-{job}.out", tail=10**7) and time.monotonic() - cut < timeout_s + 60
        ):
            time.sleep(0.2)
        detected = time.monotonic() - cut
    finally:
        slurm2.network.set_link("node2", up=True)
    assert detected < timeout_s + 15, f"node 1 noticed after {detected:.0f} s{diag()}"
    info, out, diagnostics = _finish(slurm2, run_dir, job)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) == 1, diagnostics
    assert f"(dist.timeout_s={timeout_s})" in out and "at step 6 (written by 2 processes)" in out, diagnostics
    assert logged_steps(run_dir) == list(range(1, STEPS + 1)), f"a step trained twice or skipped{diagnostics}"
    _assert_two_nodes(out, slurm2, diagnostics, runs=2)
    _assert_bitwise_equal(ddp_straight[0], run_dir, diagnostics)


# ------------------------------------------------------------------------------------------ DeepSpeed
@pytest.fixture(scope="module")
def ds_straight(slurm2, demo_data, tmp_path_factory) -> tuple[Path, str, str]:
    run_dir = tmp_path_factory.mktemp("ds-straight") / "run"
    run_dir, out, diag = _straight_run(slurm2, demo_data, run_dir, DS_STEPS, ACCELERATE_CONFIG=str(DEEPSPEED))
    assert (run_dir / "checkpoints" / f"step-{DS_STEPS:08d}" / "deepspeed").is_dir(), diag
    return run_dir, out, diag


def test_deepspeed_zero2_usr1_on_two_nodes_resumes_bitwise(ds_straight, slurm2, demo_data, tmp_path):
    _assert_two_nodes(ds_straight[1], slurm2, ds_straight[2])
    run_dir = tmp_path / "run"
    _, diag = _preempted_run(slurm2, demo_data, run_dir, DS_STEPS, ACCELERATE_CONFIG=str(DEEPSPEED))
    _assert_bitwise_equal(ds_straight[0], run_dir, diag)


def test_deepspeed_two_node_checkpoint_resumes_on_one_node_via_universal(ds_straight, slurm2, demo_data, tmp_path):
    """ZeRO shards are per rank: converted once with `cyclesr checkpoints to-universal`, they load on 1 process."""
    source = tmp_path / "converted"
    shutil.copytree(ds_straight[0] / "checkpoints", source / "checkpoints")
    step_dir = source / "checkpoints" / f"step-{DS_STEPS:08d}"
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "checkpoints", "to-universal", str(step_dir)]
    proc = subprocess.run(cmd, cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _resume_on_one_node(slurm2, demo_data, source, tmp_path / "run", DS_STEPS, ACCELERATE_CONFIG=str(DEEPSPEED))


# -------------------------------------------------------------------------------------------- Submitit
def test_submitit_on_two_nodes_saves_requeues_and_resumes(slurm2, tmp_path):
    """`cyclesr submit --nodes 2`: one task per node, the rendezvous host taken by Submitit from the node list (by
    name: it must resolve on every node); USR2 -> both save -> rank 0 requeues -> both resume. Stand-in trainer."""
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=30, checkpoint={"every_steps": 1000}, fake={"step_s": 0.2})
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "submit", "--config", str(config), "--nodes", "2", "--cpu"]
    cmd += ["--nproc-per-node", "1", "--timeout-min", "10", "--run-dir", str(run_dir)]
    cmd += ["--entry", "fake_train:train", "--config-loader", "fake_train:load_config"]
    env = slurm2.env(python_env({"OMP_NUM_THREADS": "1"}))
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = int(proc.stdout.split("submitted job ")[1].split(";")[0])
    logs = run_dir / "submitit" / str(job)

    def task_log(task: int) -> str:
        return read_text(logs / f"{job}_{task}_log.out") + read_text(logs / f"{job}_{task}_log.err")

    def diag() -> str:
        return f"\n{slurm2.job_info(job)}\n--- task 0:\n{task_log(0)}\n--- task 1:\n{task_log(1)}\n{slurm2.logs()}"

    wait_for_step(run_dir, 5, timeout=120, alive=job_running(slurm2, job), what=diag)
    slurm2.run("scancel", "--signal=USR2", str(job))  # every task, as Slurm does at the time limit
    info = slurm2.wait_state(job, FINAL_STATES, timeout=180)

    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, diag()
    assert logged_steps(run_dir) == list(range(1, 31)), f"a step was trained twice or skipped{diag()}"
    assert {row["world"] for row in read_train_log(run_dir)} == {2}, diag()
    assert "rank 0/2 (local 0) on node1" in task_log(0) and "rank 1/2 (local 0) on node2" in task_log(1), diag()
    assert "asking the trainer to save" in task_log(1), diag()  # the save is collective: node2 took part
    assert "Requeued job" in task_log(0) and "resumed from" in task_log(0), diag()


# ------------------------------------------------------------------------------------------ k8s Indexed Job
def _pod_command(container: dict, env: dict[str, str]) -> list[str]:
    """The container's command + args with $(VAR) expanded from its env, as the kubelet does."""
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a) for a in container["command"] + container["args"]]
    # This machine's interpreter; the stand-in trainer (same command line and contract) instead of train.py.
    return [sys.executable if a == "python" else str(FAKE_TRAIN) if a == "train.py" else a for a in argv]


def test_k8s_indexed_job_pods_form_one_world_across_two_nodes(node_network, tmp_path):
    """The 2-node overlay's container command, pod i (JOB_COMPLETION_INDEX=i) in namespace node<i+1> with host name
    <job>-<i>; the headless Service's names (<job>-<i>.<subdomain>) resolve through a hosts file as cluster DNS does."""
    docs = render(K8S / "overlays" / "indexed-job-2x8")
    (job,) = by_kind(docs, "Job")
    pod_spec = job["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    name, subdomain, pods = job["metadata"]["name"], pod_spec["subdomain"], job["spec"]["completions"]
    assert pods == len(node_network.nodes) == 2
    aliases = {node: [f"{name}-{i}.{subdomain}", f"{name}-{i}"] for i, node in enumerate(node_network.nodes)}
    hosts = node_network.hosts_file("hosts-k8s", aliases)
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=6, checkpoint={"every_steps": 1000}, fake={"step_s": 0.1})
    refs = {e["name"]: e["valueFrom"].get("fieldRef", {}) for e in container["env"] if "valueFrom" in e}
    assert "job-completion-index" in refs["PET_NODE_RANK"]["fieldPath"]
    pods_argv_env = []
    for index, node in enumerate(node_network.nodes):
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env |= {"PET_NODE_RANK": str(index), "JOB_COMPLETION_INDEX": str(index)}  # the fieldRef's value
        # 1 process per pod: no GPUs here (the overlay asks for 8 per node).
        env |= {"PET_NPROC_PER_NODE": "1", "CONFIG": str(config), "OUTPUT_DIR": str(run_dir)}
        argv = node_network.on_node(node, _pod_command(container, env), hostname=f"{name}-{index}", hosts=hosts)
        pods_argv_env.append((argv, env))
    procs, outs = _run_together(pods_argv_env)
    diag = "".join(f"\n--- pod {i}:\n{out[-6000:]}" for i, out in enumerate(outs))
    assert [p.returncode for p in procs] == [0, 0], diag
    assert env["PET_MASTER_ADDR"] == f"{name}-0.{subdomain}", diag  # used as rendered, resolved by the hosts file
    assert logged_steps(run_dir) == list(range(1, 7)) and {r["world"] for r in read_train_log(run_dir)} == {2}, diag
    assert f"host={name}-0" in outs[0] and "rank 1 finished" in outs[1], diag
    ckpt = run_dir / "checkpoints" / "step-00000006"
    assert sorted(p.name for p in ckpt.glob("rank-*")) == ["rank-0.json", "rank-1.json"], diag


def _run_together(argv_env: list[tuple[list[str], dict[str, str]]], timeout: float = 180):
    """Start every command at once (they rendezvous with each other); returns (processes, outputs)."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for argv, env in argv_env:
            env = python_env({**env, "OMP_NUM_THREADS": "1"})
            out = subprocess.PIPE
            procs.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True))
        return procs, [_output(p, timeout) for p in procs]
    finally:
        for p in procs:
            _kill_tree(p)


def test_gloo_socket_ifname_when_node_names_do_not_resolve(node_network, tmp_path):
    """The knob for nodes whose host name does not resolve (or resolves to the wrong interface): gloo would fall back
    to the loopback address and never connect across nodes; GLOO_SOCKET_IFNAME names the interface to bind to."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")  # node1, node2 resolve nowhere
    run_dir = tmp_path / "run"
    config = fake_config(tmp_path / "fake.yaml", max_steps=3, checkpoint={"every_steps": 1000}, fake={"step_s": 0.1})
    cmd = [sys.executable, "-m", "torch.distributed.run", str(FAKE_TRAIN), "--config", str(config)]
    common = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": node_network.addr["node1"]}
    common |= {"PET_MASTER_PORT": "29500", "GLOO_SOCKET_IFNAME": IFACE}
    argv_env = [
        (node_network.on_node(node, [*cmd, f"output_dir={run_dir}"], hosts=hosts), {**common, "PET_NODE_RANK": str(i)})
        for i, node in enumerate(node_network.nodes)
    ]
    procs, outs = _run_together(argv_env, timeout=120)
    diag = "".join(f"\n--- {node}:\n{out[-6000:]}" for node, out in zip(node_network.nodes, outs, strict=True))
    assert [p.returncode for p in procs] == [0, 0], diag
    assert {r["world"] for r in read_train_log(run_dir)} == {2} and logged_steps(run_dir) == [1, 2, 3], diag


def _output(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        return proc.communicate()[0] + f"\n<killed after {timeout}s>"


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """torchrun and its workers, if still running (a failed or timed-out test)."""
    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
