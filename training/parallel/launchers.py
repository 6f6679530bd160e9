"""The commands that run a job on one or several processes and machines, and what each strategy
asks of the Trainer.

    python -m training.parallel.launchers --processes 2 -- --base builtin --data d.jsonl --name n
    python -m training.parallel.launchers --nodes 2 --processes 8 --host node1 -- --base ... --name n
    python -m training.parallel.launchers --nodes 2 --processes 8 --slurm -- --base ... --name n

One machine: `torchrun --standalone`. Several machines: one `torchrun --nnodes` command per node,
all meeting at rank 0's machine (`--master-addr`, node 0), or one Slurm `sbatch` script. The registry
(SQLite) stays on rank 0's machine, on a local disk: SQLite's locks are not reliable on network
filesystems (NFS, SMB, Lustre), and only rank 0 writes it. The checkpoints folder must be
reachable from every machine for a resume (each rank reads the checkpoint back).
"""

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from core import home
from core.errors import UserError

RENDEZVOUS_PORT = 29500
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "fuse.sshfs", "9p")


@dataclass(frozen=True)
class Launch:
    processes: int = 1  # per machine
    nodes: int = 1
    host: str = "127.0.0.1"  # rank 0's machine, where the others meet
    port: int = RENDEZVOUS_PORT

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes


def trainer_command(launch: Launch, trainer_args: list[str], python: str = sys.executable) -> list[str]:
    """What runs on this machine: the trainer itself, or torchrun starting `processes` of it."""
    if launch.world_size == 1:
        return [python, "-m", "training.train", *trainer_args]
    return [
        python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(launch.processes),
        "-m", "training.train", *trainer_args,
    ]  # fmt: skip


def node_commands(launch: Launch, trainer_args: list[str], job_name: str) -> list[str]:
    """One shell command per machine; the first one is rank 0's, which owns the registry.

    A static rendezvous at rank 0's machine: c10d's rendezvous ignores --node-rank and numbers the
    machines by host name and launcher pid (tried: the node started first became rank 0), so the
    registry would live wherever that lands; static keeps node 0's first process rank 0."""
    del job_name  # a static rendezvous has no id; the name is kept for the Slurm script's signature
    commands = []
    for node in range(launch.nodes):
        words = [
            "torchrun", "--nnodes", str(launch.nodes), "--node-rank", str(node),
            "--nproc-per-node", str(launch.processes), "--master-addr", launch.host,
            "--master-port", str(launch.port), "-m", "training.train", *trainer_args,
        ]  # fmt: skip
        commands.append(shlex.join(words))
    return commands


def sbatch_script(launch: Launch, trainer_args: list[str], job_name: str, project: Path) -> str:
    """A Slurm batch script: one task per node, each running torchrun, meeting at the first node,
    which is rank 0 (each task's shell reads its own $SLURM_NODEID)."""
    per_node = (
        f'torchrun --nnodes {launch.nodes} --node-rank "$SLURM_NODEID" --nproc-per-node {launch.processes} '
        f'--master-addr "$HEAD_NODE" --master-port {launch.port} '
        + shlex.join(["-m", "training.train", *trainer_args])
    )
    return f"""#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={launch.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={launch.processes}
#SBATCH --output=slurm-%j.out
# The registry ($TRANSLATOR_HOME/registry.db) must be on the first node's local disk (SQLite on a
# network filesystem is not safe); $TRANSLATOR_HOME/jobs must be reachable from every node.
set -euo pipefail
cd {shlex.quote(str(project))}
export HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun bash -c {shlex.quote(per_node)}
"""


def trainer_flags(config) -> list[str]:
    """The trainer's flags for `config`: every setting that differs from its default."""
    from dataclasses import fields

    from training.config import TrainConfig, flag

    defaults, words = TrainConfig(), []
    for option in fields(TrainConfig):
        value = getattr(config, option.name)
        if option.name in ("job_id", "resume", "processes") or value == getattr(defaults, option.name):
            continue
        words += [flag(option.name)] if isinstance(value, bool) else [flag(option.name), str(value)]
    return words


def shell_command(config, launch: Launch) -> str:
    """The command that runs this job from a shell, as the page will run it."""
    words = trainer_command(launch, trainer_flags(config), python="python")
    if launch.world_size > 1:
        words = ["torchrun", *words[3:]]
    return shlex.join(words)


@dataclass(frozen=True)
class LaunchPreview:
    """What the training page shows before Start: the commands and the batch sizes."""

    per_device: int
    total: int
    world_size: int
    command: str  # this machine
    node_commands: list[str]  # one per machine, when there are several
    sbatch: str


def preview(form: dict, nodes: int = 1, host: str = "127.0.0.1") -> LaunchPreview:
    """The launch of what the form holds (checked as the trainer checks it: a UserError names the
    setting that is wrong)."""
    from training.config import check_settings

    config = check_settings({key: value for key, value in form.items() if value is not None})
    launch = Launch(processes=config.processes, nodes=nodes, host=host)
    per_device, total = batch_sizes(config.batch_size, config.grad_accum, launch.world_size)
    flags, name = trainer_flags(config), config.name or "translator-job"
    several = nodes > 1
    return LaunchPreview(
        per_device=per_device,
        total=total,
        world_size=launch.world_size,
        command=shell_command(config, launch),
        node_commands=node_commands(launch, flags, name) if several else [],
        sbatch=sbatch_script(launch, flags, name, home.PROJECT_ROOT) if several else "",
    )


def batch_sizes(batch_size: int, grad_accum: int, world_size: int) -> tuple[int, int]:
    """(examples per device per optimizer step, examples per optimizer step in all)."""
    per_device = batch_size * grad_accum
    return per_device, per_device * world_size


def deepspeed_config(stage: int) -> dict:
    """ZeRO-2 (optimizer state and gradients sharded) or ZeRO-3 (parameters too). "auto" values
    are filled by the Trainer from its own arguments, so batch sizes and precision never disagree."""
    zero = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero |= {
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
        }
    else:
        zero |= {"allgather_partitions": True, "allgather_bucket_size": 2e8, "reduce_scatter": True}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def strategy_arguments(strategy: str, model) -> dict:
    """TrainingArguments for a strategy: FSDP wraps each decoder layer (the model's own
    `_no_split_modules`) and keeps the original parameters (LoRA mixes frozen and trained ones)."""
    if strategy == "ddp":
        return {}
    if strategy == "fsdp":
        layers = sorted(getattr(model, "_no_split_modules", None) or [])
        return {
            "fsdp": "full_shard auto_wrap",
            "fsdp_config": {"transformer_layer_cls_to_wrap": layers, "use_orig_params": True},
        }
    check_deepspeed()
    return {"deepspeed": deepspeed_config(2 if strategy == "zero2" else 3)}


def check_strategy(config) -> None:
    """FSDP shards over two or more processes, GPUs or CPU ones (training.parallel.sharding), for supervised
    jobs on the CPU; DeepSpeed's ZeRO shards only across GPUs (on the CPU accelerate would quietly
    fall back to a full copy per process, so say so instead)."""
    if config.strategy == "ddp":
        return
    import os

    import torch

    on_the_cpu = config.device == "cpu" or not torch.cuda.is_available()
    if config.strategy == "fsdp":
        # a shell's torchrun says how many processes there are; the setting is the app's
        if max(config.processes, int(os.environ.get("WORLD_SIZE", "1"))) < 2:
            raise UserError("ERR_FSDP_NEEDS_PROCESSES")
        if on_the_cpu and config.method != "sft":
            raise UserError("ERR_FSDP_CPU_SFT_ONLY", method=config.method.upper())
        return
    if on_the_cpu:
        raise UserError("ERR_SHARDING_NEEDS_GPUS", strategy=config.strategy)
    check_deepspeed()


def check_deepspeed() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise UserError("ERR_NO_DEEPSPEED")


def on_network_filesystem(path: Path) -> str | None:
    """The filesystem type when `path` lies on a network filesystem (Linux), else None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    resolved, best = str(Path(path).resolve()), ("", "")
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and (resolved + "/").startswith(fields[1].rstrip("/") + "/"):
            if len(fields[1]) > len(best[0]):
                best = (fields[1], fields[2])
    return best[1] if best[1] in NETWORK_FILESYSTEMS else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.parallel.launchers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--processes", type=int, default=1, help="processes (GPUs) per machine")
    parser.add_argument("--nodes", type=int, default=1, help="machines")
    parser.add_argument("--host", default="127.0.0.1", help="rank 0's machine, reachable from the others")
    parser.add_argument("--port", type=int, default=RENDEZVOUS_PORT)
    parser.add_argument("--slurm", action="store_true", help="print a Slurm sbatch script")
    parser.add_argument("--deepspeed", choices=("zero2", "zero3"), help="print a DeepSpeed config")
    parser.add_argument("trainer_args", nargs=argparse.REMAINDER, help="-- then the trainer's flags")
    args = parser.parse_args(argv)
    trainer_args = [word for word in args.trainer_args if word != "--"]
    if args.deepspeed:
        print(json.dumps(deepspeed_config(2 if args.deepspeed == "zero2" else 3), indent=2))
        return 0
    launch = Launch(processes=args.processes, nodes=args.nodes, host=args.host, port=args.port)
    name = _value_of("--name", trainer_args) or "translator-job"
    if args.slurm:
        print(sbatch_script(launch, trainer_args, name, Path.cwd()), end="")
    elif launch.nodes > 1:
        for node, command in enumerate(node_commands(launch, trainer_args, name)):
            print(f"# node {node}{' (rank 0: the registry lives here)' if node == 0 else ''}\n{command}")
    else:
        print(shlex.join(trainer_command(launch, trainer_args, python="python")))
    return 0


def _value_of(flag: str, words: list[str]) -> str | None:
    return words[words.index(flag) + 1] if flag in words[:-1] else None


if __name__ == "__main__":
    sys.exit(main())
