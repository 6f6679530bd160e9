"""Rows of runs: anything the studio starts as a detached process (a training job, an export, an API
server). Each kind keeps its own table for what only it records (a job's steps and losses, a task's
result), and every table shares the columns and the verbs here: status, pid and its start time,
heartbeat, log, error, end. One status vocabulary for all of them.

The run's own process writes its status; `studio.supervisor` marks a run whose process is gone."""

import dataclasses
from dataclasses import dataclass

from sqlite_utils import Database

from core.texts import Message
from registry.db import from_json, now, to_json

ACTIVE = ("queued", "running", "evaluating")
# stopped: the normal end of a run that serves until asked to stop (an API server)
ENDED = ("succeeded", "failed", "cancelled", "stopped", "interrupted")
STATUSES = (*ACTIVE, *ENDED)
RESUMABLE = ("interrupted", "cancelled", "failed")


@dataclass(frozen=True)
class RunTable:
    """The verbs every kind of run's table has, returning `row_type` (a frozen dataclass of the
    table's columns); `json_columns` are stored as JSON text. A column of `message_columns` (an
    error, why a job waits) takes a `core.texts.Message`: its code and fields go to `<column>_message`
    and the row reads in the reader's language; the column itself keeps the writer's rendering, which
    is what a row written before the codes, or a plain sentence, shows."""

    table: str
    row_type: type
    json_columns: tuple[str, ...] = ()
    message_columns: tuple[str, ...] = ("error",)

    def create(self, db: Database, **fields):
        """A new run, queued. Raises sqlite3.IntegrityError where the table refuses it."""
        row = {"status": "queued", "created_at": now(), **self._encode(fields)}
        with db.conn:
            run_id = db[self.table].insert(row).last_pk
        return self.get(db, run_id)

    def get(self, db: Database, run_id: int):
        rows = list(db[self.table].rows_where("id = ?", [run_id], limit=1))
        return self.decode(rows[0]) if rows else None

    def update(self, db: Database, run_id: int, **fields) -> None:
        with db.conn:
            db[self.table].update(run_id, self._encode(fields))

    def finish(self, db: Database, run_id: int, status: str, *, error: str | None = None, **fields) -> bool:
        """End a run that is still active; a run already ended keeps the status it has (a late
        signal handler, or the supervisor that found its process gone, cannot overwrite it)."""
        if status not in ENDED:
            raise ValueError(f"{status!r} is not an end: {ENDED}")
        stamp = now()
        fields = self._encode({"status": status, "error": error, "finished_at": stamp, **fields})
        if "heartbeat_at" in db[self.table].columns_dict:
            fields["heartbeat_at"] = stamp
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with db.conn:
            cursor = db.conn.execute(
                f"update {self.table} set {assignments} where id = ? and status in ({_marks(ACTIVE)})",
                [*fields.values(), run_id, *ACTIVE],
            )
        return cursor.rowcount == 1

    def mark_interrupted(self, db: Database, run_id: int, pid: int | None, error: Message | str) -> bool:
        """Interrupted, only if the run is still active under the same process: one that ended
        between the supervisor's look and this write keeps the end it wrote."""
        stamp = now()
        fields = self._encode({"status": "interrupted", "error": error, "finished_at": stamp})
        if "heartbeat_at" in db[self.table].columns_dict:
            fields["heartbeat_at"] = stamp
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with db.conn:
            cursor = db.conn.execute(
                f"update {self.table} set {assignments} "
                f"where id = ? and status in ({_marks(ACTIVE)}) and pid is ?",
                [*fields.values(), run_id, *ACTIVE, pid],
            )
        return cursor.rowcount == 1

    def active(self, db: Database) -> list:
        rows = db[self.table].rows_where(f"status in ({_marks(ACTIVE)})", list(ACTIVE), order_by="id")
        return [self.decode(row) for row in rows]

    def list_recent(self, db: Database, *, limit: int = 200, **equal) -> list:
        """The newest runs first, where each column in `equal` has the value given."""
        where = " and ".join(f"{column} = ?" for column in equal) or None
        rows = db[self.table].rows_where(where, list(equal.values()), order_by="id desc", limit=limit)
        return [self.decode(row) for row in rows]

    def _encode(self, fields: dict) -> dict:
        encoded = {k: to_json(v) if k in self.json_columns else v for k, v in fields.items()}
        for column in self.message_columns:
            if column in fields:
                message = fields[column]
                coded = isinstance(message, Message)
                encoded[column] = str(message) if coded else message
                encoded[f"{column}_message"] = to_json(message.as_json()) if coded else None
        return encoded

    def decode(self, row: dict):
        values = {field.name: row.get(field.name) for field in dataclasses.fields(self.row_type)}
        for column in self.json_columns:
            values[column] = from_json(row.get(column), {}) or {}
        for column in self.message_columns:
            message = Message.from_json(from_json(row.get(f"{column}_message")))
            if message is not None:  # rendered now, in the language of whoever reads the row
                values[column] = str(message)
        return self.row_type(**values)


def _marks(values) -> str:
    return ", ".join("?" * len(values))
