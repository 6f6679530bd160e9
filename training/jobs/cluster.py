"""A job on a Slurm cluster: the checks before it exists, and the batch script it is submitted as.

The studio does not schedule on a cluster; Slurm does. A job whose settings say `cluster=slurm` is
checked here as a local one is checked (training.jobs.lifecycle) and then against the cluster: Slurm
installed, the partition there, no more GPUs or nodes than it has, the studio's home visible from
its nodes, and finally `sbatch --test-only` with the very script, so whatever else Slurm refuses
(an account, a limit) is quoted before any job row exists. The script runs our trainer on the
allocated nodes (`srun`, torchrun per node meeting at the first node when the job has several
processes) from the shared filesystem where the studio's home lives; the trainer writes the same
registry and publishes its adapter there, as a local job does.
"""

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from core import home, texts
from core.errors import UserError
from registry.jobs import Job
from studio import slurm
from training.config import TrainConfig

SCRIPT = "slurm.sh"
NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "panfs", "wekafs", "cifs", "smb2",
    "fuse.glusterfs", "glusterfs", "fuse.sshfs", "fuse.juicefs", "afs",
}  # fmt: skip
# sbatch(1) --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]
TIME_LIMIT = r"|\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}"
SHARED_HOME = "TRANSLATOR_SHARED_HOME"  # 1: the nodes see TRANSLATOR_HOME at the same path
SECONDS_TO_SAVE = 90  # Slurm signals the trainer this long before the time limit, to checkpoint
MASTER_PORT = 29533


def check(config: TrainConfig) -> slurm.Partition:
    """What the cluster would refuse, as one UserError (Slurm's own words where it is Slurm that
    refuses); the partition the job goes to."""
    if not re.fullmatch(TIME_LIMIT, config.time_limit):
        raise UserError("ERR_SLURM_TIME", given=config.time_limit)
    slurm.require()
    found = slurm.partitions()
    name = config.partition or slurm.default_partition()
    if name not in found:
        raise UserError("ERR_SLURM_PARTITION", partition=name or "-", known=", ".join(found) or "-")
    partition = found[name]
    if config.nodes > partition.nodes:
        raise UserError("ERR_SLURM_NODES", nodes=config.nodes, partition=name, have=partition.nodes)
    if config.gpus_per_node > partition.gpus_per_node:
        raise UserError(
            "ERR_SLURM_GPUS", gpus=config.gpus_per_node, partition=name, have=partition.gpus_per_node
        )
    if config.gpus_per_node and config.processes > config.gpus_per_node:
        raise UserError("ERR_SLURM_PROCESSES", processes=config.processes, gpus=config.gpus_per_node)
    check_shared_home(partition)
    return partition


def check_shared_home(partition: slurm.Partition) -> None:
    """The nodes must see the studio's home at the same path (the job reads its plan there and
    writes the registry and the adapter there). True when this machine is one of the nodes, when the
    home is on a network filesystem, or when the person says so (TRANSLATOR_SHARED_HOME=1)."""
    if os.environ.get(SHARED_HOME) == "1":
        return
    here = {socket.gethostname(), socket.gethostname().split(".")[0], "localhost"}
    if here & set(partition.hosts):
        return
    kind = filesystem_type(home.home())
    if kind not in NETWORK_FILESYSTEMS:
        raise UserError(
            "ERR_SLURM_NOT_SHARED",
            home=home.home(),
            kind=kind or "?",
            partition=partition.name,
            variable=SHARED_HOME,
        )


def filesystem_type(path: Path) -> str:
    done = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def script(job: Job, config: TrainConfig, job_dir: Path) -> str:
    """The batch script of a job the registry already holds: the trainer claims the job by its id
    and trains its stored plan; `--resume` (sbatch's argument, or Slurm's restart count after a
    requeue) continues from the newest checkpoint."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=translator-{job.id}-{config.name}",
        f"#SBATCH --nodes={config.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={max(config.processes, 1)}",
        f"#SBATCH --output={job_dir / 'train.log'}",
        "#SBATCH --open-mode=append",
        # the trainer saves a checkpoint and ends interrupted (or requeues) before the limit's kill
        f"#SBATCH --signal=TERM@{SECONDS_TO_SAVE}",
        "#SBATCH --requeue" if config.requeue else "#SBATCH --no-requeue",
    ]
    for option, value in (
        ("partition", config.partition),
        ("gpus-per-node", config.gpus_per_node or ""),
        ("time", config.time_limit),
        ("account", config.slurm_account),
    ):
        if value:
            lines.append(f"#SBATCH --{option}={value}")
    trainer = [sys.executable, "-m", "training.train", "--job-id", str(job.id)]
    environment = {
        "TRANSLATOR_HOME": str(home.home()),
        "TRANSLATOR_LANG": texts.current(),
        "PYTHONUNBUFFERED": "1",
        "TRANSLATOR_DEVICES_HELD": "1",  # Slurm allocated the devices: no local queue to wait in
    }
    lines += [f"export {key}={shlex.quote(value)}" for key, value in environment.items()]
    lines += [
        "set -uo pipefail",
        f"cd {shlex.quote(str(home.PROJECT_ROOT))}",
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then set -- --resume; fi  # requeued: resume',
    ]
    if config.nodes * config.processes == 1:
        lines.append(f'srun --kill-on-bad-exit=1 {shlex.join(trainer)} "$@"')
    else:
        head = 'export HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
        per_node = (
            f"{shlex.quote(sys.executable)} -m torch.distributed.run --nnodes {config.nodes} "
            f'--node-rank "$SLURM_NODEID" --nproc-per-node {config.processes} '
            f'--master-addr "$HEAD_NODE" --master-port {MASTER_PORT} ' + shlex.join(trainer[1:]) + ' "$@"'
        )
        lines += [head, f'srun --kill-on-bad-exit=1 bash -c {shlex.quote(per_node)} bash "$@"']
    return "\n".join(lines) + "\n"


def write_script(job: Job, config: TrainConfig, job_dir: Path) -> Path:
    path = job_dir / SCRIPT
    path.write_text(script(job, config, job_dir), encoding="utf-8")
    return path


def test_submission(config: TrainConfig) -> None:
    """`sbatch --test-only` on the script this job would get (with a stand-in id): Slurm's refusal of
    anything the checks above do not know (an account, a QOS, a limit), before the row exists."""
    stand_in = Job(
        **{**{name: None for name in Job.__dataclass_fields__}, "id": 0, "config": {}, "remedy": {}}
    )
    slurm.test_submission(script(stand_in, config, home.jobs_dir()), str(home.PROJECT_ROOT))
