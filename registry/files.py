"""Rows of `files`: data given to the studio through the API's `/v1/files` (OpenAI's Files API),
each kept whole in the home's `files/` folder. training.jobs.files checks and writes them."""

from dataclasses import dataclass, fields

from sqlite_utils import Database

from registry.db import now


@dataclass(frozen=True)
class File:
    id: str  # file-<hex>, as OpenAI's ids
    filename: str  # as uploaded
    purpose: str  # fine-tune
    bytes: int
    kind: str  # instructions (supervised) | preferences (DPO)
    records: int  # the examples it holds, as the trainer reads them
    path: str  # where its bytes are kept
    created_at: float
    owner_id: int | None = None  # the account that uploaded it (team mode; None: the studio's owner)


_COLUMNS = tuple(field.name for field in fields(File))


def create(db: Database, **values) -> File:
    with db.conn:
        db["files"].insert({**values, "created_at": now()})
    return get(db, values["id"])


def get(db: Database, file_id: str) -> File | None:
    rows = list(db["files"].rows_where("id = ?", [file_id], limit=1))
    return _decode(rows[0]) if rows else None


def by_path(db: Database, path: str) -> File | None:
    rows = list(db["files"].rows_where("path = ?", [path], order_by="created_at", limit=1))
    return _decode(rows[0]) if rows else None


def list_all(db: Database, purpose: str | None = None) -> list[File]:
    where, values = ("purpose = ?", [purpose]) if purpose else (None, [])
    return [_decode(row) for row in db["files"].rows_where(where, values, order_by="created_at desc, id")]


def delete(db: Database, file_id: str) -> None:
    with db.conn:
        db["files"].delete_where("id = ?", [file_id])


def _decode(row: dict) -> File:
    return File(**{name: row.get(name) for name in _COLUMNS})
