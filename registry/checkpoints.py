"""Rows of `checkpoint_scores`: each saved checkpoint of a job, scored on the job's held-out
examples. The trainer writes them; pages only read them."""

from sqlite_utils import Database

from registry.db import from_json, now, to_json


def store(db: Database, *, job_id: int, step: int, **fields) -> dict:
    """One row per (job, step): a resumed job that saves the same step again replaces its score."""
    row = {**fields, "job_id": job_id, "step": step, "scores": to_json(fields["scores"]), "created_at": now()}
    with db.conn:
        db["checkpoint_scores"].delete_where("job_id = ? and step = ?", [job_id, step])
        db["checkpoint_scores"].insert(row)
    return _one(db, job_id, step)


def for_job(db: Database, job_id: int | None) -> list[dict]:
    if not job_id:
        return []
    rows = db["checkpoint_scores"].rows_where("job_id = ?", [job_id], order_by="step")
    return [_decode(row) for row in rows]


def _one(db: Database, job_id: int, step: int) -> dict:
    rows = db["checkpoint_scores"].rows_where("job_id = ? and step = ?", [job_id, step], limit=1)
    return _decode(next(iter(rows)))


def _decode(row: dict) -> dict:
    return {**row, "scores": from_json(row["scores"], {})}
