"""A throw-away one-node SLURM cluster for tests: munged, slurmctld and slurmd started directly.

Everything lives under one directory (munge key and socket, slurm.conf, state, spool, logs,
pid files); nothing touches /etc or systemd. Clients find the cluster through the environment
returned by `SlurmCluster.env()` (SLURM_CONF), which submitit's sbatch/squeue/scontrol calls and
the jobs themselves inherit. `stop()` ends the three daemons by the pids they were started with.

Needs Debian's `slurmctld slurmd slurm-client munge` (or any install with the same binaries) and
root, since slurmd must start jobs as the submitting user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def _which(name: str) -> str | None:
    # the daemons sit in /usr/sbin, which a non-login PATH may lack
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def missing_binaries() -> list[str]:
    """The cluster's programs that cannot be found (empty when a cluster can start)."""
    return [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node named after this host, `cpus` CPUs, partition `debug`, accounting off."""

    def __init__(self, root: Path, cpus: int = 4, memory_mb: int = 4000) -> None:
        self.root = Path(root)
        self.cpus, self.memory_mb = cpus, memory_mb
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.pids: dict[str, int] = {}

    # ---------------------------------------------------------------- configuration
    def _write_munge_key(self) -> Path:
        key = self.root / "munge" / "munge.key"
        key.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        return key

    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        lines = [
            "ClusterName=smoothbench-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/builtin",
            # a configured node may claim more CPUs than the host has: jobs here are tiny
            "SlurmdParameters=config_overrides",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=300",
            "Waittime=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "MessageTimeout=10",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        """Environment additions under which SLURM clients talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    # ---------------------------------------------------------------- life cycle
    def _spawn(self, name: str, args: list[str], pid_file: Path) -> None:
        env = {**os.environ, **self.env()}
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (kept open for the daemon)
        proc = subprocess.Popen(
            [_which(name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.pids[name] = proc.pid
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc

    def _wait_for(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in getattr(self, "_procs", {}).items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout} s: {self.logs()}")

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd in the foreground (-D)."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = self._write_munge_key()
        self._write_conf()
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
            self.root / "run" / "munged.pid",
        )
        self._wait_for("munged", self.munge_socket.exists, timeout)
        self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)], self.root / "run")
        self._wait_for("slurmctld", lambda: self._client_ok(["scontrol", "ping"], "UP"), timeout)
        self._spawn("slurmd", ["-D", "-f", str(self.conf)], self.root / "run")
        self._wait_for("slurmd", self._node_idle, timeout)
        return self

    def _client_ok(self, cmd: list[str], expect: str) -> bool:
        try:
            out = subprocess.run(
                [_which(cmd[0]), *cmd[1:]],
                capture_output=True,
                text=True,
                timeout=10,
                env={**os.environ, **self.env()},
            )
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and expect in out.stdout

    def _node_idle(self) -> bool:
        return self._client_ok(["sinfo", "-h", "-N", "-o", "%t"], "idle")

    def logs(self, tail: int = 2000) -> str:
        """The end of every daemon log, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace")
            if text.strip():
                parts.append(f"--- {path.name}\n{text[-tail:]}")
        return "\n".join(parts)

    def start_pending_now(self, job_id: str) -> bool:
        """Let a requeued job start at once: SLURM holds a requeued job for ~2 minutes
        (reason BeginTime), an administrator may lift that. True when the job was held."""
        env = {**os.environ, **self.env()}
        out = subprocess.run(
            [_which("squeue"), "-h", "-j", job_id, "-o", "%T %r"],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
        ).stdout.split()
        if out[:2] != ["PENDING", "BeginTime"]:
            return False
        subprocess.run(
            [_which("scontrol"), "update", f"JobId={job_id}", "StartTime=now"],
            capture_output=True,
            timeout=10,
            env=env,
            check=True,
        )
        return True

    def cancel_all_jobs(self, timeout: float = 20) -> None:
        """Cancel every job of this (private) cluster and wait until the queue is empty."""
        env = {**os.environ, **self.env()}
        subprocess.run(
            [_which("scancel"), "--user", str(os.getuid())],
            capture_output=True,
            timeout=10,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = subprocess.run(
                [_which("squeue"), "-h"], capture_output=True, text=True, timeout=10, env=env
            )
            if queue.returncode != 0 or not queue.stdout.strip():
                return
            time.sleep(0.5)

    def stop(self, timeout: float = 15) -> None:
        """Cancel leftover jobs, then end the daemons this object started, by pid, newest first,
        waiting for each to exit."""
        procs = getattr(self, "_procs", {})
        if "slurmd" in procs and procs["slurmd"].poll() is None:
            self.cancel_all_jobs()
        for name in reversed(list(self.pids)):
            proc = procs[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
        self.pids.clear()
