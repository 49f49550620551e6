"""A two-node Slurm cluster on one machine: two network namespaces joined by a bridge, one slurmd in each.

    root namespace   bridge <br> 10.77.N.1   slurmctld, munged, the test (sbatch, squeue, ...)
    node1            cs0 10.77.N.11          slurmd -N node1, host name node1
    node2            cs0 10.77.N.12          slurmd -N node2, host name node2

Every process of a node (its slurmd and, through slurmstepd, the job's tasks) runs in the node's network namespace
and in its own UTS and mount namespaces, where ``hostname`` is the node name and a hosts file under the cluster's
temp dir is bind-mounted over ``/etc/hosts`` so that node names resolve to the node addresses, as DNS does on a
real cluster (Submitit takes the rendezvous host from the node list by name; gloo binds to the address the host
name resolves to). munged listens on a Unix socket in the file system, which every namespace shares.

Needs root (``ip netns``, veth, bridge, ``unshare``, ``mount --bind``). Everything created here is named after
this process's PID and removed by :meth:`NodeNetwork.destroy` / :meth:`NetnsSlurmCluster.stop`, so two test
sessions on one machine, or the single-node cluster of slurm_cluster.py, do not collide.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from slurm_cluster import SlurmCluster, serve_until_interrupted

IFACE = "cs0"  # the node side of each veth pair: the same name on every node, as eth0 on a real cluster


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _free_subnet() -> int:
    """A third octet N with no 10.77.N.0/24 address on this machine (another session may hold one)."""
    used = _ip("-o", "-4", "addr", "show").stdout
    start = 100 + os.getpid() % 100
    for n in [*range(start, 250), *range(10, start)]:
        if f" 10.77.{n}." not in used:
            return n
    raise NetworkError("no free 10.77.N.0/24 subnet")


class NodeNetwork:
    """Network namespaces ``nodes`` (host names) on one bridge, each with an address; a hosts file naming them."""

    def __init__(self, root: Path | None = None, nodes: tuple[str, ...] = ("node1", "node2")) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="netns-"))
        self.nodes = nodes
        tag = f"cs{os.getpid() % 10_000_000}"
        self.bridge = f"{tag}br"
        self.netns = {node: f"{tag}n{i}" for i, node in enumerate(nodes, 1)}
        self._veth = {node: f"{tag}v{i}" for i, node in enumerate(nodes, 1)}
        self.subnet = 0
        self.gateway = ""
        self.addr: dict[str, str] = {}
        self.created: list[tuple[str, str]] = []  # (kind, name), for destroy()

    def create(self) -> NodeNetwork:
        try:
            self.subnet = _free_subnet()
            self.gateway = f"10.77.{self.subnet}.1"
            self.addr = {node: f"10.77.{self.subnet}.{10 + i}" for i, node in enumerate(self.nodes, 1)}
            _ip("link", "add", self.bridge, "type", "bridge")
            self.created.append(("link", self.bridge))
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for node, ns in self.netns.items():
                _ip("netns", "add", ns)
                self.created.append(("netns", ns))
                _ip("link", "add", self._veth[node], "type", "veth", "peer", "name", IFACE, "netns", ns)
                self.created.append(("link", self._veth[node]))
                _ip("link", "set", self._veth[node], "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.addr[node]}/24", "dev", IFACE)
                _ip("-n", ns, "link", "set", IFACE, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def set_link(self, node: str, up: bool) -> None:
        """Plug or pull `node`'s cable: its veth end on the bridge up or down (it reaches no one, no one reaches it)."""
        _ip("link", "set", self._veth[node], "up" if up else "down")

    def destroy(self) -> None:
        """Delete what create() made (deleting a namespace also deletes the veth end inside it)."""
        for kind, name in reversed(self.created):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self.created.clear()

    def hosts_file(self, name: str = "hosts", aliases: dict[str, list[str]] | None = None) -> Path:
        """A hosts file: localhost, the gateway as this machine's name, every node (plus ``aliases[node]``)."""
        lines = ["127.0.0.1 localhost", f"{self.gateway} {os.uname().nodename.split('.')[0]}"]
        lines += [f"{self.addr[n]} {' '.join([n, *(aliases or {}).get(n, [])])}" for n in self.nodes]
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def on_node(self, node: str, argv: list[str], hostname: str | None = None, hosts: Path | None = None) -> list[str]:
        """``argv`` run on ``node``: in its network namespace, with its own host name and the hosts file."""
        hosts = hosts or self.hosts_file()
        script = 'hostname "$1" && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'
        wrap = ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        # nsenter, not `ip netns exec`: that one remounts /sys for the namespace, hiding /sys/fs/cgroup, without
        # which slurmd refuses to start.
        return ["nsenter", f"--net=/run/netns/{self.netns[node]}", *wrap, hostname or node, str(hosts), *argv]


class NetnsSlurmCluster(SlurmCluster):
    """slurmctld and munged in the root namespace on the bridge address, one slurmd per node of ``network``.

    Each node offers 1 CPU: the two nodes share this machine's cores, and a job that sizes its threads from the
    allocation (the trainer does) then does not oversubscribe them."""

    cluster_name = "netnscluster"

    def __init__(self, network: NodeNetwork, root: Path | None = None, cred_expire_s: int = 5) -> None:
        super().__init__(root, node_name=network.nodes[0], cred_expire_s=cred_expire_s)
        self.network = network
        self.ctld_addr = network.gateway

    @property
    def node_names(self) -> list[str]:
        return list(self.network.nodes)

    def _node_lines(self) -> list[str]:
        nodes = [f"NodeName={n} NodeAddr={self.network.addr[n]} CPUs=1 State=UNKNOWN" for n in self.node_names]
        names = ",".join(self.node_names)
        return [*nodes, f"PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP"]

    def _daemon_argv(self, argv: list[str], node: str | None) -> list[str]:
        return argv if node is None else self.network.on_node(node, argv)


if __name__ == "__main__":
    import sys

    net = NodeNetwork(Path(sys.argv[1]) if len(sys.argv) > 1 else None).create()
    try:
        serve_until_interrupted(NetnsSlurmCluster(net, net.root / "slurm").start())
    finally:
        net.destroy()
