"""Rows of the `jobs` and `metrics` tables. The trainer and `training.lifecycle` write them; pages
only read them."""

import sqlite3

from sqlite_utils import Database

from core import texts
from core.errors import UserError
from registry.db import from_json, now, to_json

ACTIVE = ("queued", "running", "evaluating")
RESUMABLE = ("interrupted", "cancelled", "failed")


def create(db: Database, *, adapter_name: str, config: dict, **fields) -> dict:
    row = {
        "adapter_name": adapter_name,
        "config": to_json(config),
        "status": "queued",
        "created_at": now(),
        "step": 0,
        **fields,
    }
    try:
        with db.conn:
            job_id = db["jobs"].insert(row).last_pk
    except sqlite3.IntegrityError as error:
        _refuse_a_second_active_job(db, adapter_name, error)
    return get(db, job_id)


def get(db: Database, job_id: int) -> dict | None:
    rows = list(db["jobs"].rows_where("id = ?", [job_id], limit=1))
    return _decode(rows[0]) if rows else None


def update(db: Database, job_id: int, **fields) -> None:
    try:
        with db.conn:
            db["jobs"].update(job_id, fields)
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


def finish(db: Database, job_id: int, status: str, error: str | None = None) -> None:
    update(db, job_id, status=status, error=error, finished_at=now(), heartbeat_at=now())


def list_all(db: Database, limit: int = 200) -> list[dict]:
    return [_decode(r) for r in db["jobs"].rows_where(order_by="id desc", limit=limit)]


def mark_interrupted(db: Database, job_id: int, pid: int | None, error: str) -> bool:
    """Interrupted, only if the job is still active under the same process: a trainer that finished
    between our look and this write keeps the status it wrote."""
    stamp = now()
    with db.conn:
        cursor = db.conn.execute(
            f"update jobs set status = 'interrupted', error = ?, finished_at = ?, heartbeat_at = ? "
            f"where id = ? and status in ({', '.join('?' * len(ACTIVE))}) and pid is ?",
            [error, stamp, stamp, job_id, *ACTIVE, pid],
        )
    return cursor.rowcount == 1


def active(db: Database) -> list[dict]:
    where = f"status in ({', '.join('?' * len(ACTIVE))})"
    return [_decode(row) for row in db["jobs"].rows_where(where, list(ACTIVE), order_by="id")]


def active_for_name(db: Database, adapter_name: str) -> dict | None:
    rows = db["jobs"].rows_where(
        f"adapter_name = ? and status in ({', '.join('?' * len(ACTIVE))})",
        [adapter_name, *ACTIVE],
        order_by="id desc",
    )
    rows = list(rows)
    return _decode(rows[0]) if rows else None


def latest_resumable(db: Database, adapter_name: str) -> dict | None:
    rows = db["jobs"].rows_where(
        "adapter_name = ? and status in (?, ?, ?)",
        [adapter_name, *RESUMABLE],
        order_by="id desc",
        limit=1,
    )
    rows = list(rows)
    return _decode(rows[0]) if rows else None


def record_metric(db: Database, job_id: int, step: int, **values) -> None:
    with db.conn:
        db["metrics"].insert({"job_id": job_id, "step": step, "created_at": now(), **values})


def metrics_for(db: Database, job_id: int) -> list[dict]:
    return list(db["metrics"].rows_where("job_id = ?", [job_id], order_by="step, id"))


def _decode(row: dict) -> dict:
    row = dict(row)
    row["config"] = from_json(row.get("config"), {})
    return row
