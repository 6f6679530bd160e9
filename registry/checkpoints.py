"""Rows of `checkpoint_scores`: each saved checkpoint of a job, scored on the job's held-out
examples. The trainer writes them; pages only read them."""

from dataclasses import dataclass, fields

from sqlite_utils import Database

from registry.db import from_json, now, to_json


@dataclass(frozen=True)
class CheckpointScore:
    """A saved checkpoint of a job, scored on the job's held-out examples."""

    id: int
    job_id: int
    step: int
    epoch: float | None
    kind: str  # translation | loss (the role's metric)
    scores: dict  # bleu, chrf | loss, perplexity
    num_examples: int | None
    signature: str | None
    weights_path: str | None  # the checkpoint's adapter weights, kept after checkpoint rotation
    created_at: float


def store(db: Database, *, job_id: int, step: int, **values) -> CheckpointScore:
    """One row per (job, step): a resumed job that saves the same step again replaces its score."""
    row = {**values, "job_id": job_id, "step": step, "scores": to_json(values["scores"]), "created_at": now()}
    with db.conn:
        db["checkpoint_scores"].delete_where("job_id = ? and step = ?", [job_id, step])
        db["checkpoint_scores"].insert(row)
    return _one(db, job_id, step)


def for_job(db: Database, job_id: int | None) -> list[CheckpointScore]:
    if not job_id:
        return []
    rows = db["checkpoint_scores"].rows_where("job_id = ?", [job_id], order_by="step")
    return [_decode(row) for row in rows]


def _one(db: Database, job_id: int, step: int) -> CheckpointScore:
    rows = db["checkpoint_scores"].rows_where("job_id = ? and step = ?", [job_id, step], limit=1)
    return _decode(next(iter(rows)))


_COLUMNS = tuple(field.name for field in fields(CheckpointScore))


def _decode(row: dict) -> CheckpointScore:
    return CheckpointScore(
        **{**{name: row.get(name) for name in _COLUMNS}, "scores": from_json(row["scores"], {})}
    )
