"""Rows of `evaluations`: scores per adapter (or the base alone) per dataset, computed once."""

from sqlite_utils import Database

from registry.db import from_json, now, to_json


def find(db: Database, *, adapter_id, base_model: str, kind: str, fingerprint: str, num_examples: int):
    where = "base_model = ? and kind = ? and dataset_fingerprint = ? and num_examples = ? and "
    where += "adapter_id is null" if adapter_id is None else "adapter_id = ?"
    values = [base_model, kind, fingerprint, num_examples] + ([] if adapter_id is None else [adapter_id])
    rows = list(db["evaluations"].rows_where(where, values, order_by="id desc", limit=1))
    return _decode(rows[0]) if rows else None


def store(db: Database, **row) -> dict:
    row = {**row, "scores": to_json(row["scores"]), "created_at": now()}
    with db.conn:
        evaluation_id = db["evaluations"].insert(row).last_pk
    return _decode(db["evaluations"].get(evaluation_id))


def for_adapter(db: Database, adapter_id: int) -> list[dict]:
    rows = db["evaluations"].rows_where("adapter_id = ?", [adapter_id], order_by="id desc")
    return [_decode(row) for row in rows]


def base_counterpart(db: Database, evaluation: dict) -> dict | None:
    """The base model's score on the same examples, to show an adapter's gain."""
    return find(
        db,
        adapter_id=None,
        base_model=evaluation["base_model"],
        kind=evaluation["kind"],
        fingerprint=evaluation["dataset_fingerprint"],
        num_examples=evaluation["num_examples"],
    )


def of_other_adapters(db: Database, evaluation: dict) -> list[dict]:
    """Other adapters' evaluations of the same examples (same kind, dataset fingerprint and size),
    newest first."""
    rows = db["evaluations"].rows_where(
        "kind = ? and dataset_fingerprint = ? and num_examples = ? and adapter_id is not null "
        "and adapter_id != ?",
        [
            evaluation["kind"],
            evaluation["dataset_fingerprint"],
            evaluation["num_examples"],
            evaluation["adapter_id"],
        ],
        order_by="id desc",
    )
    return [_decode(row) for row in rows]


def _decode(row: dict) -> dict:
    return {**row, "scores": from_json(row["scores"], {})}
