"""A real one-machine Slurm cluster for the tests: munged, slurmctld and slurmd (Debian's packages,
`setup.sh --dev` installs them as root) with this machine's CPUs, in a temporary directory.

Clients find it through SLURM_CONF; the daemons run as root (as slurmd must, to start jobs) with
process tracking that needs no cgroups, so it runs in a container. One partition, `debug`, the
default, whose longest time limit is an hour (a longer request is refused by Slurm itself, as
clusters that enforce partition limits do).
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
MAX_MINUTES = 60


def missing() -> str | None:
    """Why a cluster cannot start here (None when it can)."""
    absent = [name for name in (*DAEMONS, "sbatch", "mungekey") if shutil.which(name) is None]
    if absent:
        return f"no {', '.join(absent)}: run ./setup.sh --dev as root (installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs: run the tests as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.processes: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> "Cluster":
        root = self.root
        for folder in ("state", "spool", "munge"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "munge", 0o700)
        key = root / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
        os.chmod(key, 0o400)
        socket_path = root / "munge" / "munge.socket"
        self._spawn(
            "munged",
            "--foreground",
            "--force",
            f"--socket={socket_path}",
            f"--key-file={key}",
            f"--pid-file={root / 'munge' / 'munged.pid'}",
            f"--log-file={root / 'munge' / 'munged.log'}",
            f"--seed-file={root / 'munge' / 'munged.seed'}",
        )
        self._wait(lambda: socket_path.exists(), "munged")
        cpus = os.cpu_count() or 1
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=translator-tests",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={socket_path}",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SwitchType=switch/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "KillWait=30",
                    "EnforcePartLimits=ALL",  # a request beyond a partition's limits is refused at once
                    "MinJobAge=600",
                    "SchedulerParameters=sched_interval=2",
                    f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.host} Default=YES MaxTime={MAX_MINUTES} State=UP",
                ]
            )
            + "\n"
        )
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self._answers(["scontrol", "ping"], "UP"), "slurmctld")
        self._spawn("slurmd", "-D", "-f", str(self.conf), "-N", self.host)
        self._wait(lambda: self._answers(["sinfo", "-h", "-o", "%t"], "idle"), "slurmd's node to be idle")
        return self

    def _spawn(self, *command: str) -> None:
        log = open(self.root / f"{command[0]}.out", "ab")  # noqa: SIM115 (kept for the daemon's life)
        self.processes.append(
            subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def _answers(self, command: list[str], expected: str) -> bool:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        return done.returncode == 0 and expected in done.stdout

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited: {self.logs()}")
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def logs(self) -> str:
        tails = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            tails.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(tails)

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
