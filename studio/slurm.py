"""Slurm through its own commands: what the cluster has, submitting a batch script, a job's state,
cancelling. The studio hands a job to the cluster's scheduler and follows it there; it schedules
nothing itself.

Every call is a short subprocess of Slurm's command line (`sinfo`, `sbatch`, `squeue`, `scontrol`,
`scancel`), so it works on any login node where a person could type them, with no daemon or
library of ours on the cluster. Reading a job's state is a read: pages call it while drawing.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from core.errors import UserError

# States in which a job no longer runs and will not run again unless requeued
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "SPECIAL_EXIT",
}
CALL_SECONDS = 30


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: int
    gpus_per_node: int  # the fewest any of its nodes has (0: none)
    cpus_per_node: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class State:
    """A Slurm job as Slurm tells it: its state, why it waits (or how it ended), where it runs."""

    state: str  # PENDING RUNNING COMPLETING COMPLETED FAILED CANCELLED TIMEOUT PREEMPTED NODE_FAIL ...
    reason: str  # Slurm's reason ("Resources", "Priority", "None")
    nodes: str  # the node list ("node[1-2]"), empty while pending
    time_left: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def available() -> bool:
    return shutil.which("sbatch") is not None


def require() -> None:
    if not available():
        raise UserError("ERR_SLURM_MISSING")


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CALL_SECONDS)
    except FileNotFoundError as error:
        raise UserError("ERR_SLURM_MISSING") from error
    except subprocess.TimeoutExpired as error:
        raise UserError(
            "ERR_SLURM_REFUSED", command=command[0], said=f"no answer in {CALL_SECONDS} s"
        ) from error
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(
            "ERR_SLURM_REFUSED", command=command[0], said=" ".join(said[-3:]) or f"exit {done.returncode}"
        )
    return done


def partitions() -> dict[str, Partition]:
    """The cluster's partitions with their nodes, as `sinfo` lists them (one line per node)."""
    require()
    listed = _run("sinfo", "-h", "-N", "-o", "%P|%N|%c|%G").stdout
    found: dict[str, list] = {}
    for line in listed.splitlines():
        partition, host, cpus, gres = (line.split("|") + ["", "", "", ""])[:4]
        found.setdefault(partition.rstrip("*"), []).append((host, _int(cpus), gpus_in(gres)))
    return {
        name: Partition(
            name=name,
            nodes=len(nodes),
            gpus_per_node=min(gpus for _, _, gpus in nodes),
            cpus_per_node=min(cpus for _, cpus, _ in nodes),
            hosts=tuple(host for host, _, _ in nodes),
        )
        for name, nodes in found.items()
    }


def default_partition() -> str:
    """The partition Slurm uses when none is named (sinfo marks it with '*'), else ""."""
    listed = _run("sinfo", "-h", "-o", "%P").stdout.split()
    return next((name.rstrip("*") for name in listed if name.endswith("*")), "")


def gpus_in(gres: str) -> int:
    """GPUs in a node's generic resources: "gpu:4", "gpu:a100:2(S:0-1)", "gpu:2,shard:8" → 4, 2, 2."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _int(text: str) -> int:
    digits = re.match(r"\d+", text.strip())
    return int(digits.group()) if digits else 0


def test_submission(script: str, directory: str) -> None:
    """Ask Slurm whether it would take the script (`sbatch --test-only`): a partition, account or
    limit it refuses is refused here, quoted, before any job row exists."""
    done = subprocess.run(
        ["sbatch", "--test-only", f"--chdir={directory}"],
        input=script,
        capture_output=True,
        text=True,
        timeout=CALL_SECONDS,
    )
    said = (done.stderr + done.stdout).strip()
    if done.returncode != 0 or "error" in said.lower():
        raise UserError("ERR_SLURM_REFUSED", command="sbatch", said=" ".join(said.splitlines()[-3:]))


def submit(script_path: str, directory: str, arguments: list[str] = ()) -> int:
    """Submit a batch script (with arguments for it); Slurm's job id."""
    out = _run("sbatch", "--parsable", f"--chdir={directory}", script_path, *arguments).stdout.strip()
    return int(out.split(";")[0])


def state(job_id: int) -> State | None:
    """The job's state now: from the queue while it is there, else from what the controller still
    remembers of it (MinJobAge, 5 minutes by default); None when Slurm knows nothing of it."""
    cached = _recent.get(job_id)
    if cached and time.monotonic() - cached[0] < 1.0:
        return cached[1]
    found = _from_queue(job_id) or _from_controller(job_id)
    _recent[job_id] = (time.monotonic(), found)
    return found


_recent: dict[int, tuple[float, State | None]] = {}


def _from_queue(job_id: int) -> State | None:
    done = _run("squeue", "-h", "-j", str(job_id), "-o", "%T|%r|%N|%L", check=False)
    line = done.stdout.strip().splitlines()
    if done.returncode != 0 or not line:
        return None
    found, reason, nodes, left = (line[0].split("|") + ["", "", "", ""])[:4]
    return State(found, reason, nodes, left)


def _from_controller(job_id: int) -> State | None:
    done = _run("scontrol", "-o", "show", "job", str(job_id), check=False)
    if done.returncode != 0 or "JobState=" not in done.stdout:
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
    nodes = fields.get("NodeList", "")
    return State(fields.get("JobState", ""), fields.get("Reason", ""), "" if nodes == "(null)" else nodes)


def cancel(job_id: int) -> None:
    _run("scancel", str(job_id), check=False)


def requeue_self() -> bool:
    """From inside a batch job: put it back in the queue (it runs its script again)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    return bool(job_id) and _run("scontrol", "requeue", job_id, check=False).returncode == 0


def minutes_left() -> float | None:
    """From inside a job: minutes until its time limit (None when it has none or Slurm is not
    there to ask)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    found = _from_queue(int(job_id))
    return _minutes(found.time_left) if found else None


def _minutes(text: str) -> float | None:
    if not text or text in ("INVALID", "UNLIMITED", "NOT_SET"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds / 60
