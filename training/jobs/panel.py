"""What the training page's job panel shows for one job row, in the chosen language."""

from dataclasses import dataclass

from core import texts
from registry import jobs as job_rows
from registry.jobs import Job
from studio import slurm

NOTHING_YET = "–"


@dataclass(frozen=True)
class JobView:
    heading: str
    fraction: float  # of the planned optimizer steps, 0..1
    progress: str
    loss: str
    speed: str
    eta: str
    learning_rate: str
    active: bool  # still queued, training or evaluating: the panel refreshes itself
    resumable: bool
    failed_with: str  # the trainer's message when it failed or was interrupted, else ""
    succeeded: bool
    waiting_for: str  # why a queued job waits (devices held by other jobs), else ""
    devices: str  # "GPU 0,1", "CPU", or "" before it has them
    cluster: str = ""  # Slurm's state of a cluster job ("Slurm job 12: running on node1"), else ""


def job_view(job: Job) -> JobView:
    total, step = job.total_steps or 0, job.step or 0
    eta = job.eta_seconds
    return JobView(
        heading=f"{texts.JOB_PANEL} #{job.id} · {job.adapter_name} · {texts.STATUS[job.status]}",
        fraction=min(step / total, 1.0) if total else 0.0,
        progress=texts.STEP_PROGRESS.format(step=step, total=total or "?"),
        loss=f"{job.loss:.4f}" if job.loss is not None else NOTHING_YET,
        speed=f"{job.tokens_per_second:.0f}" if job.tokens_per_second else NOTHING_YET,
        eta=texts.SECONDS.format(seconds=f"{eta:.0f}") if eta is not None else NOTHING_YET,
        learning_rate=f"{job.learning_rate:.1e}" if job.learning_rate else NOTHING_YET,
        active=job.status in job_rows.ACTIVE,
        resumable=job.status in job_rows.RESUMABLE,
        failed_with=(job.error or "") if job.status in ("failed", "interrupted") else "",
        succeeded=job.status == "succeeded",
        waiting_for=(job.waiting_for or "") if job.status == "queued" else "",
        devices=_devices(job.devices),
        cluster=cluster_line(job),
    )


def cluster_line(job: Job) -> str:
    """Slurm's word on a cluster job, read from Slurm now: pending and why, running on which nodes,
    or how it ended."""
    if not job.slurm_job_id:
        return ""
    found = slurm.state(job.slurm_job_id)
    if found is None:
        return texts.SLURM_STATE.format(id=job.slurm_job_id, state="?", detail="")
    detail = ""
    if found.nodes and found.state != "PENDING":
        detail = texts.SLURM_ON_NODES.format(nodes=found.nodes)
    elif found.reason and found.reason != "None":
        detail = texts.SLURM_BECAUSE.format(reason=found.reason)
    state = texts.SLURM_STATES.get(found.state, found.state.lower())
    return texts.SLURM_STATE.format(id=job.slurm_job_id, state=state, detail=detail)


def _devices(held: str | None) -> str:
    if not held:
        return ""
    return texts.DEVICES_CPU if held == "cpu" else texts.DEVICES_GPUS.format(gpus=held)


def timer_is_stale(job: Job, started_as: str) -> bool:
    """The panel was drawn for a running job that has ended since, or for an ended one that a resume
    made active again: the page redraws it without its timer, or with one."""
    return (started_as in job_rows.ACTIVE) != (job.status in job_rows.ACTIVE)
