"""Rows of the `serving_tasks` table: exports and API servers, kinds of run (registry.runs). The
task process writes its own status; `studio.supervisor` marks one whose process is gone."""

from dataclasses import dataclass

from sqlite_utils import Database

from registry.runs import ACTIVE, RunTable


@dataclass(frozen=True)
class Task:
    """An export or an API server: what it was asked, its process, and what it produced."""

    id: int
    kind: str  # merge, gguf, gguf-lora, push, server; mistakes, evaluate (training tasks)
    adapter_name: str | None
    settings: dict
    status: str
    stage: str | None  # the step an export is at (texts.TASK_STAGES)
    pid: int | None
    pid_started: int | None
    log_path: str | None
    result: dict  # the export's folder or url, the server's address
    error: str | None
    created_at: float
    finished_at: float | None
    owner_id: int | None = None  # the account that started it (team mode; None: the studio's owner)


ROWS = RunTable("serving_tasks", Task, json_columns=("settings", "result"))
__all__ = ["ACTIVE", "ROWS", "Task"]
get, update, finish, active = ROWS.get, ROWS.update, ROWS.finish, ROWS.active


def create(
    db: Database, *, kind: str, adapter_name: str, settings: dict, owner_id: int | None = None
) -> Task:
    return ROWS.create(db, kind=kind, adapter_name=adapter_name, settings=settings, owner_id=owner_id)


def list_recent(
    db: Database, *, adapter_name: str | None = None, kind: str | None = None, limit=50
) -> list[Task]:
    equal = {"adapter_name": adapter_name, "kind": kind}
    return ROWS.list_recent(db, limit=limit, **{k: v for k, v in equal.items() if v is not None})
