"""Rows of the `serving_tasks` table: exports and API servers running as detached processes. The
task process writes its own status; `serving.tasks` marks one whose process is gone."""

from sqlite_utils import Database

from registry.db import from_json, now, to_json

ACTIVE = ("starting", "running")


def create(db: Database, *, kind: str, adapter_name: str, settings: dict) -> dict:
    row = {
        "kind": kind,
        "adapter_name": adapter_name,
        "settings": to_json(settings),
        "status": "starting",
        "created_at": now(),
    }
    with db.conn:
        task_id = db["serving_tasks"].insert(row).last_pk
    return get(db, task_id)


def get(db: Database, task_id: int) -> dict | None:
    rows = list(db["serving_tasks"].rows_where("id = ?", [task_id], limit=1))
    return _decode(rows[0]) if rows else None


def update(db: Database, task_id: int, **fields) -> None:
    if "result" in fields:
        fields["result"] = to_json(fields["result"])
    with db.conn:
        db["serving_tasks"].update(task_id, fields)


def finish(db: Database, task_id: int, status: str, *, error: str | None = None, **fields) -> None:
    """End a task that is still active; a task already ended keeps the status it has."""
    if "result" in fields:
        fields["result"] = to_json(fields["result"])
    assignments = ", ".join(f"{name} = ?" for name in ("status", "error", "finished_at", *fields))
    active = ", ".join("?" * len(ACTIVE))
    with db.conn:
        db.conn.execute(
            f"update serving_tasks set {assignments} where id = ? and status in ({active})",
            [status, error, now(), *fields.values(), task_id, *ACTIVE],
        )


def list_recent(db: Database, *, adapter_name: str | None = None, kind: str | None = None, limit=50) -> list:
    where, values = [], []
    if adapter_name is not None:
        where.append("adapter_name = ?")
        values.append(adapter_name)
    if kind is not None:
        where.append("kind = ?")
        values.append(kind)
    rows = db["serving_tasks"].rows_where(
        " and ".join(where) or None, values, order_by="id desc", limit=limit
    )
    return [_decode(row) for row in rows]


def active(db: Database) -> list[dict]:
    where = f"status in ({', '.join('?' * len(ACTIVE))})"
    return [_decode(row) for row in db["serving_tasks"].rows_where(where, list(ACTIVE), order_by="id")]


def _decode(row: dict) -> dict:
    row = dict(row)
    row["settings"] = from_json(row.get("settings"), {})
    row["result"] = from_json(row.get("result"), {})
    return row
