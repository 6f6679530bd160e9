"""Rows of the `jobs` and `metrics` tables: a training job is a kind of run (registry.runs). The
trainer and `training.lifecycle` write them; pages only read them."""

import sqlite3

from sqlite_utils import Database

from core import texts
from core.errors import UserError
from registry.db import now
from registry.runs import ACTIVE, RESUMABLE, RunTable

ROWS = RunTable("jobs", json_columns=("config",))
__all__ = ["ACTIVE", "RESUMABLE", "ROWS"]
get, finish, mark_interrupted, active = ROWS.get, ROWS.finish, ROWS.mark_interrupted, ROWS.active


def create(db: Database, *, adapter_name: str, config: dict, **fields) -> dict:
    try:
        return ROWS.create(db, adapter_name=adapter_name, config=config, step=0, **fields)
    except sqlite3.IntegrityError as error:
        _refuse_a_second_active_job(db, adapter_name, error)


def update(db: Database, job_id: int, **fields) -> None:
    try:
        ROWS.update(db, job_id, **fields)
    except sqlite3.IntegrityError as error:  # a resume or claim while another job of its name is active
        _refuse_a_second_active_job(db, get(db, job_id)["adapter_name"], error)


def already_training(job: dict) -> str:
    return texts.ERR_ALREADY_TRAINING.format(
        job=job["id"], name=job["adapter_name"], status=texts.STATUS[job["status"]]
    )


def _refuse_a_second_active_job(db: Database, adapter_name: str, error: sqlite3.IntegrityError):
    active = active_for_name(db, adapter_name)
    # sqlite names the column of the index it refused (registry.db.ONE_ACTIVE_JOB_PER_NAME)
    if active is None or "jobs.adapter_name" not in str(error):
        raise error
    raise UserError(already_training(active)) from None


def heartbeat(db: Database, job_id: int, **fields) -> None:
    update(db, job_id, heartbeat_at=now(), **fields)


def list_all(db: Database, limit: int = 200) -> list[dict]:
    return ROWS.list_recent(db, limit=limit)


def active_for_name(db: Database, adapter_name: str) -> dict | None:
    return next((job for job in reversed(active(db)) if job["adapter_name"] == adapter_name), None)


def latest_resumable(db: Database, adapter_name: str) -> dict | None:
    rows = db["jobs"].rows_where(
        f"adapter_name = ? and status in ({', '.join('?' * len(RESUMABLE))})",
        [adapter_name, *RESUMABLE],
        order_by="id desc",
        limit=1,
    )
    return next((ROWS.decode(row) for row in rows), None)


def record_metric(db: Database, job_id: int, step: int, **values) -> None:
    with db.conn:
        db["metrics"].insert({"job_id": job_id, "step": step, "created_at": now(), **values})


def metrics_for(db: Database, job_id: int) -> list[dict]:
    return list(db["metrics"].rows_where("job_id = ?", [job_id], order_by="step, id"))
