"""Rows of `evaluations`: scores per adapter (or the base alone) per dataset, computed once."""

from dataclasses import dataclass, fields

from sqlite_utils import Database

from registry.db import from_json, now, to_json


@dataclass(frozen=True)
class Evaluation:
    """One scoring of an adapter (or of its base alone: `adapter_id` None) on a dataset."""

    id: int
    adapter_id: int | None
    adapter_name: str | None
    base_model: str
    role: str | None
    kind: str  # translation (BLEU/chrF) or loss (reference loss/perplexity)
    dataset_name: str | None
    dataset_fingerprint: str
    num_examples: int
    scores: dict
    signature: str | None
    predictions_path: str | None  # one JSON line per example: input, reference, prediction
    created_at: float
    decoding: str | None = None  # engine.roles.Decoding.key of the predictions; None: greedy (older rows)


GREEDY = "greedy"
_SAME_DECODING = f"coalesce(decoding, '{GREEDY}') = ?"


def find(
    db: Database,
    *,
    adapter_id,
    base_model: str,
    kind: str,
    fingerprint: str,
    num_examples: int,
    decoding: str = GREEDY,
) -> Evaluation | None:
    where = "base_model = ? and kind = ? and dataset_fingerprint = ? and num_examples = ? and "
    where += f"{_SAME_DECODING} and "
    where += "adapter_id is null" if adapter_id is None else "adapter_id = ?"
    values = [base_model, kind, fingerprint, num_examples, decoding]
    values += [] if adapter_id is None else [adapter_id]
    rows = list(db["evaluations"].rows_where(where, values, order_by="id desc", limit=1))
    return _decode(rows[0]) if rows else None


def store(db: Database, **row) -> Evaluation:
    row = {**row, "scores": to_json(row["scores"]), "created_at": now()}
    with db.conn:
        evaluation_id = db["evaluations"].insert(row).last_pk
    return _decode(db["evaluations"].get(evaluation_id))


def for_adapter(db: Database, adapter_id: int) -> list[Evaluation]:
    rows = db["evaluations"].rows_where("adapter_id = ?", [adapter_id], order_by="id desc")
    return [_decode(row) for row in rows]


def base_counterpart(db: Database, evaluation: Evaluation) -> Evaluation | None:
    """The base model's score on the same examples, to show an adapter's gain."""
    return find(
        db,
        adapter_id=None,
        base_model=evaluation.base_model,
        kind=evaluation.kind,
        fingerprint=evaluation.dataset_fingerprint,
        num_examples=evaluation.num_examples,
        decoding=evaluation.decoding or GREEDY,
    )


def of_other_adapters(db: Database, evaluation: Evaluation) -> list[Evaluation]:
    """Other adapters' evaluations of the same examples (same kind, dataset fingerprint and size),
    newest first."""
    rows = db["evaluations"].rows_where(
        f"kind = ? and dataset_fingerprint = ? and num_examples = ? and {_SAME_DECODING} "
        "and adapter_id is not null and adapter_id != ?",
        [
            evaluation.kind,
            evaluation.dataset_fingerprint,
            evaluation.num_examples,
            evaluation.decoding or GREEDY,
            evaluation.adapter_id,
        ],
        order_by="id desc",
    )
    return [_decode(row) for row in rows]


_COLUMNS = tuple(field.name for field in fields(Evaluation))


def _decode(row: dict) -> Evaluation:
    return Evaluation(
        **{**{name: row.get(name) for name in _COLUMNS}, "scores": from_json(row["scores"], {})}
    )
