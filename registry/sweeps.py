"""Rows of `sweep_points`: each learning rate a sweep job tried, with its held-out score. The
trainer writes them; pages only read them."""

from dataclasses import dataclass, fields

from sqlite_utils import Database

from registry.db import from_json, now, to_json


@dataclass(frozen=True)
class SweepPoint:
    """One learning rate of a sweep: trained `steps` steps from the sweep's start, then scored."""

    id: int
    job_id: int
    lr: float
    steps: int | None
    train_loss: float | None
    kind: str  # translation | loss (the role's metric)
    scores: dict  # bleu, chrf | loss, perplexity
    num_examples: int | None
    seconds: float | None
    created_at: float


def store(db: Database, *, job_id: int, lr: float, **values) -> SweepPoint:
    """One row per (job, rate): a rate tried again replaces its row."""
    row = {**values, "job_id": job_id, "lr": lr, "scores": to_json(values["scores"]), "created_at": now()}
    with db.conn:
        db["sweep_points"].delete_where("job_id = ? and lr = ?", [job_id, lr])
        db["sweep_points"].insert(row)
    return next(point for point in for_job(db, job_id) if point.lr == lr)


def for_job(db: Database, job_id: int | None) -> list[SweepPoint]:
    if not job_id:
        return []
    rows = db["sweep_points"].rows_where("job_id = ?", [job_id], order_by="lr")
    return [_decode(row) for row in rows]


_COLUMNS = tuple(field.name for field in fields(SweepPoint))


def _decode(row: dict) -> SweepPoint:
    return SweepPoint(
        **{**{name: row.get(name) for name in _COLUMNS}, "scores": from_json(row["scores"], {})}
    )
