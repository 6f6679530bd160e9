"""The fair order in which queued jobs take the devices.

Jobs wait for GPUs (or for the CPU) in their trainer's process (training.trainer.job), each trying
to take its devices every second. Left to that race, whoever polls first wins, and one person who
queues ten jobs holds every GPU while a colleague's single job waits behind all of them. So only the
job at the head of a fair line may try:

- a job is *in line* when its trainer has claimed it and it holds no devices yet;
- the line is ordered by how many jobs each owner holds right now (fewest first), then by age: two
  people's jobs alternate on a shared pool, and a person alone keeps first-come, first-served;
- an owner at the limit of concurrent jobs the studio's owner set for them waits out of line, so
  their jobs never block anyone else's.

In a single-user studio every job has the same owner (none), and the line is first-come,
first-served: better than the race it replaces.
"""

from core import texts
from registry import accounts as account_rows
from registry import jobs as job_rows
from registry.jobs import Job
from studio import supervisor


def _holds(job: Job) -> bool:
    return bool(job.devices)


def line(db, jobs: list[Job] | None = None) -> tuple[list[Job], list[Job], dict]:
    """(the jobs in line in fair order, the jobs at their owner's limit, jobs held per owner)."""
    active = [supervisor.as_seen(job) for job in (jobs if jobs is not None else job_rows.active(db))]
    # a cluster's jobs wait in Slurm's queue, not for this machine's devices
    active = [job for job in active if job.status in job_rows.ACTIVE and job.config.get("cluster") != "slurm"]
    held: dict = {}
    for job in active:
        if _holds(job):
            held[job.owner_id] = held.get(job.owner_id, 0) + 1
    limits = {account.id: account.max_jobs for account in account_rows.list_all(db) if account.max_jobs}
    waiting = [job for job in active if job.status == "queued" and job.pid and not _holds(job)]
    at_limit = [job for job in waiting if held.get(job.owner_id, 0) >= limits.get(job.owner_id, 1 << 30)]
    in_line = sorted(
        (job for job in waiting if job not in at_limit),
        key=lambda job: (held.get(job.owner_id, 0), job.created_at, job.id),
    )
    return in_line, at_limit, held


def turn(db, job_id: int) -> texts.Message | None:
    """None when this job may try to take its devices now; otherwise why it waits (whose jobs go
    first and roughly when it may start, or the limit it is at)."""
    in_line, at_limit, held = line(db)
    names = account_rows.names_by_id(db)
    for job in at_limit:
        if job.id == job_id:
            account = account_rows.by_id(db, job.owner_id)
            return texts.Message(
                "WAITING_FOR_LIMIT",
                {
                    "name": names.get(job.owner_id, "?"),
                    "running": held.get(job.owner_id, 0),
                    "limit": account.max_jobs,
                },
            )
    ids = [job.id for job in in_line]
    if job_id not in ids or ids.index(job_id) == 0:
        return None  # not in line (a launcher's ranks, a job not yet claimed) or first: it may try
    ahead = in_line[: ids.index(job_id)]
    owners = ", ".join(dict.fromkeys(names.get(job.owner_id, "owner") for job in ahead))
    return texts.Message(
        "WAITING_FOR_TURN", {"owners": owners, "ahead": len(ahead), "minutes": _minutes_to_first_end(db)}
    )


def _minutes_to_first_end(db) -> str:
    """Minutes until the first running job should end, from its own ETA ("?" before any has one)."""
    etas = [job.eta_seconds for job in job_rows.active(db) if job.devices and job.eta_seconds]
    return str(max(1, round(min(etas) / 60))) if etas else "?"
