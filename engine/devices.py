"""Which device each job and each chat uses: the GPUs as a pool, the CPU as one resource.

Each GPU is held by at most one training job: a job takes as many GPUs as it has processes, all
or none, and holds them (an flock on `jobs/.gpu-<i>.lock`, released by the kernel when its last
holder exits, however it exits) for its whole run; its processes see only them
(CUDA_VISIBLE_DEVICES). A job that finds too few free GPUs waits, queued, with the reason on its
row. Chat loads its model on a GPU no job holds (one another chat already uses, if any), or on
the CPU when every GPU is taken; while it is loaded it marks that GPU (a shared flock on
`jobs/.gpu-<i>.chat`), and jobs take the GPUs no chat uses first. Without GPUs the CPU is one
resource: one training at a time (two would each run at half speed).

`TRANSLATOR_GPUS` ("0,1", or "" for none) replaces what torch finds: it restricts the app to some
GPUs, and lets tests simulate a machine with several.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from core import home, texts
from core.errors import UserError

SIMULATED = "TRANSLATOR_GPUS"

try:
    import fcntl
except ImportError:  # Windows: no locks, so no queue; jobs run side by side
    fcntl = None


def gpu_ids() -> list[int]:
    """The GPUs the app may use."""
    listed = os.environ.get(SIMULATED)
    if listed is not None:
        return [int(part) for part in listed.split(",") if part.strip()]
    try:
        import torch
    except ImportError:
        return []
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def gpu_names() -> list[str]:
    ids = gpu_ids()
    if os.environ.get(SIMULATED) is not None:
        return [f"GPU {i}" for i in ids]
    import torch

    return [f"GPU {i}: {torch.cuda.get_device_name(i)}" for i in ids]


def _lock_path(gpu: int | None) -> Path:
    return home.jobs_dir() / (".device.lock" if gpu is None else f".gpu-{gpu}.lock")


@dataclass
class Holding:
    """Devices taken by a job: GPU ids (empty for the CPU) and the open, locked files."""

    gpus: list[int]
    files: list = field(default_factory=list)

    def visible_devices(self) -> str:
        return ",".join(str(gpu) for gpu in self.gpus)

    def keep_across_exec(self) -> None:
        """The launcher the job becomes (os.exec) keeps holding them."""
        for file in self.files:
            os.set_inheritable(file.fileno(), True)

    def release(self) -> None:
        for file in self.files:
            file.close()
        self.files = []


def _try_lock(gpu: int | None, job_id: int):
    path = _lock_path(gpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a+")  # noqa: SIM115 (held for the job's whole run)
    try:
        if fcntl is not None:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    file.seek(0)
    file.truncate()
    file.write(str(job_id))
    file.flush()
    return file


def try_take(count: int, job_id: int, wanted: list[int] | None = None) -> Holding | None:
    """`count` free GPUs (exactly `wanted`, else those no chat uses first, the lowest first), or the
    CPU when `count` is 0; all or none."""
    if count == 0:
        file = _try_lock(None, job_id)
        return Holding([], [file]) if file else None
    candidates = wanted if wanted is not None else sorted(gpu_ids(), key=lambda gpu: (in_chat_use(gpu), gpu))
    taken = []
    for gpu in candidates:
        file = _try_lock(gpu, job_id)
        if file:
            taken.append((gpu, file))
            if len(taken) == count:
                taken.sort(key=lambda pair: pair[0])
                return Holding([gpu for gpu, _ in taken], [file for _, file in taken])
    for _, file in taken:  # not enough: give back what was taken
        file.close()
    return None


def _chat_mark_path(gpu: int) -> Path:
    return home.jobs_dir() / f".gpu-{gpu}.chat"


def mark_chat(device: str):
    """While chat's model is loaded on `device`, the open file that marks its GPU (None on the CPU):
    a shared flock, so several chats can mark one GPU, released by the kernel when the process ends."""
    if fcntl is None or not device.startswith("cuda:"):
        return None
    path = _chat_mark_path(int(device.split(":", 1)[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a")  # noqa: SIM115 (held while the model is loaded)
    fcntl.flock(file, fcntl.LOCK_SH)
    return file


def in_chat_use(gpu: int) -> bool:
    return _held_by_another(_chat_mark_path(gpu), fcntl.LOCK_EX if fcntl else 0) is not None


def _held_by_another(path: Path, probe: int) -> str | None:
    """What a lock file says (its text) while another process holds a lock that `probe` (flock's
    LOCK_SH or LOCK_EX) conflicts with; None while nobody does."""
    if fcntl is None or not path.is_file():
        return None
    with open(path) as file:
        try:
            fcntl.flock(file, probe | fcntl.LOCK_NB)
        except BlockingIOError:
            return file.read().strip()
    return None


def launched_gpus(count: int) -> list[int]:
    """The GPUs the ranks of a launcher started by hand use: the first `count` of
    CUDA_VISIBLE_DEVICES, else of all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [int(gpu) for gpu in visible.split(",") if gpu.strip().isdigit()] if visible else gpu_ids()
    return ids[:count]


def holders() -> dict[int, int | None]:
    """GPU → the job holding it (None: free)."""
    held = {}
    for gpu in gpu_ids():
        text = _held_by_another(_lock_path(gpu), fcntl.LOCK_SH if fcntl else 0)
        held[gpu] = None if text is None else int(text) if text.isdigit() else 0
    return held


def free_gpus() -> list[int]:
    return [gpu for gpu, job in holders().items() if job is None]


def uses_gpus(device: str) -> bool:
    """Whether a job asking for `device` ("" is automatic) takes GPUs from the pool."""
    return device != "cpu" and bool(gpu_ids())


def waiting_reason(count: int) -> texts.Message:
    held = holders()
    if count == 0:
        return texts.Message("WAITING_FOR_CPU")
    busy = sorted({job for job in held.values() if job is not None})
    free = ", ".join(str(gpu) for gpu, job in held.items() if job is None) or "-"
    return texts.Message(
        "WAITING_FOR_GPUS", {"count": count, "free": free, "jobs": ", ".join(str(job) for job in busy) or "-"}
    )


def check_enough_gpus(processes: int, device: str) -> None:
    """A job asking for more GPUs than the machine has would wait forever."""
    gpus = gpu_ids()
    if device != "cpu" and gpus and processes > len(gpus):
        raise UserError("ERR_TOO_MANY_GPUS", count=processes, have=len(gpus))


def chat_gpu() -> int | None:
    """The GPU chat may load its model on: one no training job holds, preferring one that another
    chat (the app, the API server) already uses, so jobs keep the others (None: every one is held)."""
    free = free_gpus()
    return min(free, key=lambda gpu: (not in_chat_use(gpu), gpu)) if free else None


def chat_device() -> str:
    """A GPU no training job holds, else the CPU: chat never takes memory a job counts on."""
    import torch

    gpu = chat_gpu()
    return f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu"
