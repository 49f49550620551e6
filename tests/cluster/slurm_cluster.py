"""A throw-away single-node Slurm cluster on localhost, for tests.

Starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian bookworm's slurm-wlm 22.05) with every config, socket,
state and log file under one temporary directory and free TCP ports, so it neither needs nor touches
``/etc/slurm`` or a system munged, and two copies can run side by side. Clients find it through ``SLURM_CONF``
(see :meth:`SlurmCluster.env`). The daemons are stopped by the PIDs this module started.

Run ``python tests/cluster/slurm_cluster.py`` to start one by hand; it prints the ``SLURM_CONF`` to export and
stops the daemons on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cyclesr_dist.testing import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    """Names of the Slurm/munge programs that are not installed."""
    wanted = [*DAEMONS, "sbatch", "squeue", "scontrol", "scancel", "srun", "sacct"]
    return [name for name in wanted if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _cpu_count() -> int:
    out = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    for field in out.split():
        if field.startswith("CPUs="):
            return int(field.split("=", 1)[1])
    return os.cpu_count() or 1


class SlurmCluster:
    """One node called ``node_name`` with all of this machine's CPUs, one partition ``debug``.

    Subclasses (netns_cluster.py) change where the controller and the nodes live through ``cluster_name``,
    ``ctld_addr``, :meth:`_node_lines`, :meth:`_daemon_argv` and :attr:`node_names`."""

    cluster_name = "testcluster"
    ctld_addr = "127.0.0.1"

    def __init__(self, root: Path | None = None, node_name: str | None = None, cred_expire_s: int = 5):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="slurm-test-"))
        # Jobs use the node name as a host name (SLURM_JOB_NODELIST -> MASTER_ADDR), so it must resolve.
        self.node_name = node_name or _resolvable_hostname()
        self.cred_expire_s = cred_expire_s
        self.cpus = 1
        self.pids: dict[str, int] = {}
        self.conf = self.root / "etc" / "slurm.conf"

    # -- public -------------------------------------------------------------------------------------
    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        # Do not let an outer Slurm job (a CI runner inside an allocation) leak into the test cluster.
        for key in list(env):
            if key.startswith(("SLURM_JOB", "SLURM_STEP", "SBATCH_", "SRUN_", "SALLOC_")):
                del env[key]
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def start(self, timeout: float = 60) -> SlurmCluster:
        try:
            self._write_files()
            self._start_munged()
            self._start_daemon("slurmctld", ["-f", str(self.conf)])
            self._wait_for(lambda: self.run("scontrol", "ping", check=False).returncode == 0, timeout, "slurmctld")
            for node in self.node_names:
                self._start_daemon("slurmd", ["-f", str(self.conf), "-N", node], node=node)
            self._wait_for(self._nodes_idle, timeout, "slurmd to register the nodes as idle")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel the cluster's jobs, stop the daemons this object started (by PID), then end any process that
        still runs with this cluster's SLURM_CONF in its environment (job steps outlive a stopped slurmd)."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]):
            try:
                self.run("scancel", f"--user={_user_name()}", check=False, timeout=20)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    queue = self.run("squeue", "--noheader", "--all", check=False, timeout=10)
                    if queue.returncode != 0 or not queue.stdout.strip():
                        break
                    time.sleep(0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for name in reversed(list(self.pids)):  # slurmd(s) first, munged last
            _terminate(self.pids.pop(name))
        for pid in self._leftover_pids():
            _terminate(pid, wait_s=2)

    def _leftover_pids(self) -> list[int]:
        marker = f"SLURM_CONF={self.conf}".encode()
        mine = {os.getpid(), os.getppid()}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in mine:
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and _alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    def logs(self, tail: int = 40) -> str:
        """Queue, node state and the tails of the daemons' logs, for failure messages."""
        parts = []
        for cmd in (("squeue", "--all", "-o", "%i %T %r %C %D %M"), ("sinfo", "-N", "-o", "%N %T %C %E")):
            try:
                proc = self.run(*cmd, check=False, timeout=10)
                parts.append(f"==> {' '.join(cmd)} <==\n{proc.stdout}{proc.stderr}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                parts.append(f"==> {cmd[0]} failed: {exc}")
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"==> {log.name} <==\n" + "\n".join(lines))
        return "\n".join(parts)

    def sbatch(self, *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> int:
        """Submit a batch job; returns the job id."""
        proc = subprocess.run(
            ["sbatch", "--parsable", *args],
            env=self.env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise SlurmError(f"sbatch failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return int(proc.stdout.strip().split(";")[0])

    def job_info(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (empty once the job has left slurmctld's memory)."""
        proc = self.run("scontrol", "show", "job", "--oneliner", str(job_id), check=False)
        if proc.returncode != 0:
            return {}
        info: dict[str, str] = {}
        for field in proc.stdout.split():
            key, sep, value = field.partition("=")
            if sep and key not in info:
                info[key] = value
        return info

    def wait_state(self, job_id: int, states: set[str], timeout: float) -> dict[str, str]:
        """Wait until the job's state is one of ``states``; returns the job info."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job_info(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise SlurmError(f"job {job_id} not in {sorted(states)} after {timeout}s: {info}\n{self.logs()}")

    # -- internals ----------------------------------------------------------------------------------
    def _write_files(self) -> None:
        for sub in ("etc", "log", "run", "state", "munge", *(f"spool/{node}" for node in self.node_names)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Readable for job processes of any user (munge refuses group/world-writable dirs, not readable ones).
        for path in (self.root, *self.root.iterdir()):
            os.chmod(path, 0o755)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        self.cpus = _cpu_count()
        r = self.root
        user = _user_name()
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName={self.cluster_name}",
                    f"SlurmctldHost={socket.gethostname().split('.')[0]}({self.ctld_addr})",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    f"SlurmUser={user}",
                    f"SlurmdUser={user}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={r}/munge/munge.socket,cred_expire={self.cred_expire_s}",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool/%n",
                    f"SlurmctldPidFile={r}/run/slurmctld.pid",
                    f"SlurmdPidFile={r}/run/slurmd-%n.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd-%n.log",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/backfill",
                    "SchedulerParameters=sched_interval=2",
                    "ReturnToService=2",
                    "JobRequeue=1",
                    "KillWait=20",
                    "MinJobAge=600",
                    "InactiveLimit=0",
                    "SlurmdTimeout=60",
                    *self._node_lines(),
                    "",
                ]
            )
        )

    @property
    def node_names(self) -> list[str]:
        return [self.node_name]

    def _node_lines(self) -> list[str]:
        return [
            f"NodeName={self.node_name} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP",
        ]

    def _daemon_argv(self, argv: list[str], node: str | None) -> list[str]:
        """The command line that starts a daemon (``node``: the slurmd's node); here, as is."""
        return argv

    def _start_munged(self) -> None:
        m = self.root / "munge"
        pid_file = m / "munged.pid"
        subprocess.run(
            [
                _binary("munged"),
                "--force",
                f"--key-file={m / 'munge.key'}",
                f"--socket={m / 'munge.socket'}",
                f"--pid-file={pid_file}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.pids["munged"] = self._read_pid(pid_file, "munged")

    def _start_daemon(self, name: str, args: list[str], node: str | None = None) -> None:
        pid_file = self.root / "run" / ("slurmctld.pid" if node is None else f"slurmd-{node}.pid")
        # -i: slurmctld ignores saved state it cannot read; both daemonise and write their PID file.
        extra = ["-i"] if name == "slurmctld" else []
        argv = self._daemon_argv([_binary(name), *extra, *args], node)
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SlurmError(f"{name} failed to start ({proc.returncode}): {proc.stderr}\n{self.logs()}")
        key = name if node is None or len(self.node_names) == 1 else f"{name}-{node}"
        self.pids[key] = self._read_pid(pid_file, key)

    def _read_pid(self, pid_file: Path, name: str, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = pid_file.read_text().strip()
                if text:
                    return int(text)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        raise SlurmError(f"{name} wrote no PID file {pid_file}\n{self.logs()}")

    def _nodes_idle(self) -> bool:
        nodes = ",".join(self.node_names)
        proc = self.run("sinfo", "--noheader", "--Node", "--nodes", nodes, "--format=%N %T", check=False)
        states = dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)
        usable = {"idle", "mixed", "allocated"}
        return proc.returncode == 0 and all(states.get(n, "").rstrip("*") in usable for n in self.node_names)

    def _wait_for(self, ok, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise SlurmError(f"{name} (pid {pid}) died while waiting for {what}\n{self.logs()}")
            time.sleep(0.2)
        raise SlurmError(f"timed out waiting for {what}\n{self.logs()}")


def _terminate(pid: int, wait_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if ``pid`` is still alive after ``wait_s`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped: daemons are re-parented to PID 1) is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _resolvable_hostname() -> str:
    name = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(name)
        return name
    except OSError:
        return "localhost"


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def serve_until_interrupted(cluster: SlurmCluster) -> None:
    """For running a test cluster by hand: print the SLURM_CONF to export, stop the daemons on Ctrl-C."""
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    serve_until_interrupted(SlurmCluster(Path(sys.argv[1]) if len(sys.argv) > 1 else None).start())
