"""Rows of the `serving_tasks` table: exports and API servers, kinds of run (registry.runs). The
task process writes its own status; `studio.supervisor` marks one whose process is gone."""

from sqlite_utils import Database

from registry.runs import ACTIVE, RunTable

ROWS = RunTable("serving_tasks", json_columns=("settings", "result"))
__all__ = ["ACTIVE", "ROWS"]
get, update, finish, active = ROWS.get, ROWS.update, ROWS.finish, ROWS.active


def create(db: Database, *, kind: str, adapter_name: str, settings: dict) -> dict:
    return ROWS.create(db, kind=kind, adapter_name=adapter_name, settings=settings)


def list_recent(db: Database, *, adapter_name: str | None = None, kind: str | None = None, limit=50) -> list:
    equal = {"adapter_name": adapter_name, "kind": kind}
    return ROWS.list_recent(db, limit=limit, **{k: v for k, v in equal.items() if v is not None})
