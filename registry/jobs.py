"""Rows of the `jobs` and `metrics` tables: a training job is a kind of run (registry.runs). The
trainer and `training.jobs.lifecycle` write them; pages only read them."""

import sqlite3
from dataclasses import dataclass, field

from sqlite_utils import Database

from core import texts
from core.errors import UserError
from registry.db import from_json, now, to_json
from registry.runs import ACTIVE, RESUMABLE, RunTable


@dataclass(frozen=True)
class Job:
    """A training job: its request, its process, and its progress as the trainer last wrote it."""

    id: int
    adapter_name: str
    base_model: str | None
    role: str | None
    dataset_path: str | None
    dataset_name: str | None
    dataset_fingerprint: str | None
    config: dict  # the checked settings it trains with (training.config.TrainConfig.as_dict)
    status: str
    pid: int | None
    pid_started: int | None  # the process's start time: a reused pid is not this job's
    heartbeat_at: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    step: int | None
    total_steps: int | None
    epoch: float | None
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None
    eta_seconds: float | None
    num_examples: int | None
    num_truncated: int | None
    log_path: str | None
    job_dir: str | None
    error: str | None
    devices: str | None  # what it holds, as engine.devices wrote it
    waiting_for: str | None  # why a queued job waits
    remedy: dict  # the settings a resume should change after a failure ({} when none would help)
    owner_id: int | None = None  # the account that started it (team mode; None: the studio's owner)
    slurm_job_id: int | None = None  # the job's id in Slurm, when it runs on a cluster
    stop_requested_at: float | None = None  # when the studio asked a cluster job to stop
    api_request: dict = field(default_factory=dict)  # a job from the API: its file ids, suffix, metadata

    kind = "train"  # the supervisor's kind of run


ROWS = RunTable(
    "jobs", Job, json_columns=("config", "remedy", "api_request"), message_columns=("error", "waiting_for")
)
__all__ = ["ACTIVE", "RESUMABLE", "ROWS", "Job"]
get, finish, mark_interrupted, active = ROWS.get, ROWS.finish, ROWS.mark_interrupted, ROWS.active


def create(db: Database, *, adapter_name: str, config: dict, **fields) -> Job:
    try:
        return ROWS.create(db, adapter_name=adapter_name, config=config, step=0, **fields)
    except sqlite3.IntegrityError as error:
        _refuse_a_second_active_job(db, adapter_name, error)


def update(db: Database, job_id: int, **fields) -> None:
    try:
        ROWS.update(db, job_id, **fields)
    except sqlite3.IntegrityError as error:  # a resume or claim while another job of its name is active
        _refuse_a_second_active_job(db, get(db, job_id).adapter_name, error)


def already_training(job: Job) -> texts.Message:
    status = texts.Message(f"STATUS.{job.status}")
    return texts.Message("ERR_ALREADY_TRAINING", {"job": job.id, "name": job.adapter_name, "status": status})


def _refuse_a_second_active_job(db: Database, adapter_name: str, error: sqlite3.IntegrityError):
    active = active_for_name(db, adapter_name)
    # sqlite names the column of the index it refused (registry.db.ONE_ACTIVE_JOB_PER_NAME)
    if active is None or "jobs.adapter_name" not in str(error):
        raise error
    raise UserError(already_training(active)) from None


def heartbeat(db: Database, job_id: int, **fields) -> None:
    update(db, job_id, heartbeat_at=now(), **fields)


def list_all(db: Database, limit: int = 200) -> list[Job]:
    return ROWS.list_recent(db, limit=limit)


def active_for_name(db: Database, adapter_name: str) -> Job | None:
    return next((job for job in reversed(active(db)) if job.adapter_name == adapter_name), None)


def latest_resumable(db: Database, adapter_name: str) -> Job | None:
    rows = db["jobs"].rows_where(
        f"adapter_name = ? and status in ({', '.join('?' * len(RESUMABLE))})",
        [adapter_name, *RESUMABLE],
        order_by="id desc",
        limit=1,
    )
    return next((ROWS.decode(row) for row in rows), None)


def record_metric(db: Database, job_id: int, step: int, *, extra: dict | None = None, **values) -> None:
    """One logged step; `extra`: what only some kinds of training log (a preference job's reward
    accuracy and margins)."""
    row = {"job_id": job_id, "step": step, "created_at": now(), **values}
    if extra:
        row["extra"] = to_json(extra)
    with db.conn:
        db["metrics"].insert(row)


def metrics_for(db: Database, job_id: int) -> list[dict]:
    rows = db["metrics"].rows_where("job_id = ?", [job_id], order_by="step, id")
    return [{**row, "extra": from_json(row.get("extra"), {})} for row in rows]


def needing_parent(db: Database, parent: str) -> list[Job]:
    """Unfinished jobs (active, or stopped and resumable) that continue from adapter `parent`: its
    weights are their starting point and their reference, so a resume needs them."""
    wanted = (*ACTIVE, *RESUMABLE)
    rows = db["jobs"].rows_where(f"status in ({', '.join('?' * len(wanted))})", list(wanted), order_by="id")
    return [job for job in map(ROWS.decode, rows) if job.config.get("parent") == parent]


def rename_parent(db: Database, old: str, new: str) -> None:
    """Unfinished jobs that continue from a renamed adapter follow the new name (call inside the
    renaming transaction)."""
    for job in needing_parent(db, old):
        db["jobs"].update(job.id, {"config": to_json({**job.config, "parent": new})})
