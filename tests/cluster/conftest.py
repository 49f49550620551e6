"""Fixtures for the launcher tests: a real single-node Slurm cluster, the real trainer's demo data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # the helpers; the project, even when not pip-installed

from cluster_helpers import REPO, python_env  # noqa: E402
from netns_cluster import NetnsSlurmCluster, NodeNetwork  # noqa: E402
from slurm_cluster import SlurmCluster, missing_binaries  # noqa: E402

INSTALL_SCRIPT = REPO / ".ci" / "install-cluster-deps.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip on a developer machine; in CI the cluster tests must run, so fail instead."""
    if _in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def _ensure_slurm() -> None:
    missing = missing_binaries()
    if not missing:
        return
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        _unavailable(f"Slurm is not installed ({', '.join(missing)} missing) and apt needs root: run {INSTALL_SCRIPT}")
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or missing_binaries():
        _unavailable(f"could not install Slurm with {INSTALL_SCRIPT}:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """munged + slurmctld + slurmd on localhost, config and state under a temp dir; stopped by PID at the end."""
    _ensure_slurm()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 -- report the daemons' logs with the failure
        pytest.fail(f"could not start the test Slurm cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def node_network(tmp_path_factory: pytest.TempPathFactory):
    """Two network namespaces node1, node2 on a bridge (netns_cluster.py); deleted at the end, even on failure."""
    if os.geteuid() != 0:
        _unavailable("the two-node tests need root for network namespaces (ip netns, veth, bridge, unshare)")
    for tool in ("ip", "nsenter", "unshare", "mount"):
        if shutil.which(tool) is None:
            _unavailable(f"the two-node tests need {tool} (iproute2 / util-linux)")
    network = NodeNetwork(tmp_path_factory.mktemp("netns"))
    try:
        network.create()
    except Exception as exc:  # noqa: BLE001 -- e.g. a container that forbids new network namespaces
        _unavailable(f"network namespaces are not permitted here: {exc}")
    yield network
    network.destroy()


@pytest.fixture(scope="session")
def slurm2(node_network: NodeNetwork, tmp_path_factory: pytest.TempPathFactory):
    """A two-node Slurm cluster: slurmctld + munged here, a slurmd in each namespace; stopped by PID at the end."""
    _ensure_slurm()
    cluster = NetnsSlurmCluster(node_network, tmp_path_factory.mktemp("slurm2"))
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 -- report the daemons' logs with the failure
        pytest.fail(f"could not start the two-node test Slurm cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def real_trainer() -> Path:
    """The project's train.py and demo config (the launchers' end-to-end tests run the real trainer)."""
    train, demo = REPO / "train.py", REPO / "configs" / "demo.yaml"
    if not (train.is_file() and demo.is_file()):
        pytest.skip("train.py / configs/demo.yaml not in the tree yet")
    return demo


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory, real_trainer: Path) -> Path:
    """`cyclesr demo-data` into a temp dir (CI has no data/ folder)."""
    out = tmp_path_factory.mktemp("demo-data") / "demo"
    subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", "demo-data", str(out)],
        cwd=REPO,
        env=python_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out
