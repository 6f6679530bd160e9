"""One trainer, one or several processes: who does what, and how the ranks agree.

`torchrun --nproc-per-node N -m training.train ...` and `accelerate launch -m training.train ...`
run the unchanged trainer in every rank; the Trainer (through accelerate) does the data
parallelism. What this module adds is ownership:
- rank 0 alone checks the request against the registry, owns the job row, the heartbeat, the
  device lock, the checkpoints' completeness marks and the adapter. It hands the other ranks its
  canonical config (`share`), from which they build the same plan without the registry.
- a cancel reaches one rank (SIGTERM to the job's pid) or all of them (SIGTERM to the launcher);
  after every micro-batch the ranks agree (`agree`: one all-reduce over gloo) whether any rank was
  asked to stop, so all of them stop at the same step and save one checkpoint.
- a rank whose launcher dies gets SIGHUP (`die_with_parent`): torchrun starts each rank in a
  session of its own, so without it a killed launcher would leave ranks training on. The ranks
  stop together with a checkpoint, as for a cancel, and the job ends interrupted (nobody cancelled
  it: a node or its torchrun went away), to be resumed.
"""

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

# Rank 0 scores checkpoints and waits for the device while the others wait in a collective.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls, env=None) -> "World":
        """What torchrun and accelerate tell each rank (both set these variables)."""
        env = os.environ if env is None else env
        size = int(env.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            size=size,
            local_size=int(env.get("LOCAL_WORLD_SIZE", str(size))),
        )

    def device(self, requested: str) -> str:
        """Each rank's own GPU: `cuda` alone would put every rank's model on the first one."""
        if self.distributed and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested


def join(world: World) -> None:
    """Joins the process group the launcher set up. CPU tensors (our control messages) go over
    gloo, CUDA tensors (the gradients) over NCCL; accelerate then finds the group initialised."""
    import torch
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)


def leave() -> None:
    # never imports torch: a cancel can interrupt its import, and importing it again aborts the process
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def die_with_parent() -> None:
    """SIGHUP to this process when its launcher dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    if os.getppid() == 1:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGHUP)


def share(world: World, value=None):
    """Rank 0's `value`, on every rank."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(world: World, stop: bool, tokens: int, lost: bool = False) -> tuple[bool, int, bool]:
    """Whether any rank was asked to stop, the tokens all ranks went through, and whether any rank
    lost its launcher."""
    if not world.distributed:
        return stop, tokens, lost
    import torch
    import torch.distributed as dist

    totals = torch.tensor([int(stop), tokens, int(lost)], dtype=torch.int64)
    dist.all_reduce(totals)
    return bool(totals[0]), int(totals[1]), bool(totals[2])


def wait_for_all(world: World) -> None:
    agree(world, False, 0)


def is_collective_failure(error: BaseException) -> bool:
    """A peer rank died under us: gloo reports a closed connection, NCCL a backend error."""
    try:
        import torch.distributed as dist

        if isinstance(error, dist.DistError):
            return True
    except ImportError:
        pass
    text = str(error)
    return any(
        mark in text for mark in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL")
    )
