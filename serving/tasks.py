"""Exports and API servers as detached processes, re-attached after a reload like training jobs.

`launch` creates the task's row and starts `python -m serving.worker ID` in a session of its own,
its output appended to `tasks/<id>.log`; that process runs the action the row describes and writes
its end (succeeded with the result, failed with the message, cancelled, stopped). `stop` sends
SIGTERM: an export then removes what it had half-written, a server finishes its open responses.
A task whose process is gone without writing its end is marked interrupted when read.
"""

import os
import shutil
import signal
from pathlib import Path

from core import home, texts
from registry import tasks as task_rows
from studio.processes import process_alive, process_start, read_log_tail, spawn_detached

EXPORT_KINDS = ("merge", "gguf", "gguf-lora", "push")
KINDS = (*EXPORT_KINDS, "server")


def launch(db, kind: str, adapter_name: str, settings: dict, *, env: dict | None = None) -> dict:
    """Create the task's row and start its process; `env` adds secrets the row must not hold."""
    if kind not in KINDS:
        raise ValueError(kind)
    task = task_rows.create(db, kind=kind, adapter_name=adapter_name, settings=settings)
    log_path = tasks_dir() / f"{task['id']}.log"
    process = spawn_detached("serving.worker", [str(task["id"])], log_path, env=env)
    task_rows.update(
        db, task["id"], pid=process.pid, pid_started=process_start(process.pid), log_path=str(log_path)
    )
    return task_rows.get(db, task["id"])


def tasks_dir() -> Path:
    return home.home() / "tasks"


def stop(db, task_id: int) -> bool:
    task = get(db, task_id)
    if task is None or task["status"] not in task_rows.ACTIVE or not task["pid"]:
        return False
    try:
        os.kill(task["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def reconcile(db) -> None:
    """Mark each task whose process died without writing its end (kill -9, a reboot) interrupted,
    and remove what it was writing: an export's output exists complete or not at all."""
    for task in task_rows.active(db):
        if task["pid"] and not process_alive(task["pid"], task["pid_started"]):
            task_rows.finish(db, task["id"], "interrupted", error=texts.TASK_PROCESS_GONE)
            remove_staging(task)


def remove_staging(task: dict) -> None:
    """The temporary siblings an export writes before renaming its output into place."""
    out = task["settings"].get("out")
    if not out:
        return
    out = Path(out)
    for staging in (out.with_name(f".tmp-{out.name}"), out.with_name(f".tmp-merged-{out.name}")):
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


def get(db, task_id: int) -> dict | None:
    reconcile(db)
    return task_rows.get(db, task_id)


def list_recent(db, **filters) -> list[dict]:
    reconcile(db)
    return task_rows.list_recent(db, **filters)


def log_tail(task: dict, lines: int = 20) -> str:
    return read_log_tail(task, lines)
