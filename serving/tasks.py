"""Exports and API servers as detached processes, re-attached after a reload like training jobs.

    python -m serving.tasks ID        run task ID (what `launch` starts; not for people)

`launch` creates the task's row and starts `python -m serving.tasks ID` in a session of its own,
its output appended to `tasks/<id>.log`; that process runs the action the row describes and writes
its end (succeeded with the result, failed with the message, cancelled, stopped). `stop` sends
SIGTERM: an export then removes what it had half-written, a server finishes its open responses.
A task whose process is gone without writing its end is marked interrupted when read.
"""

import os
import shutil
import signal
import sys
from pathlib import Path

from engine import models, texts
from registry import connect, home
from registry import tasks as task_rows
from registry.errors import UserError
from training.lifecycle import process_alive, process_start, spawn_detached

EXPORT_KINDS = ("merge", "gguf", "gguf-lora", "push")
KINDS = (*EXPORT_KINDS, "server")


class Stopped(BaseException):
    """SIGTERM in a task process: unwinds through every cleanup, as KeyboardInterrupt would."""


def launch(db, kind: str, adapter_name: str, settings: dict, *, env: dict | None = None) -> dict:
    """Create the task's row and start its process; `env` adds secrets the row must not hold."""
    if kind not in KINDS:
        raise ValueError(kind)
    task = task_rows.create(db, kind=kind, adapter_name=adapter_name, settings=settings)
    log_path = tasks_dir() / f"{task['id']}.log"
    process = spawn_detached("serving.tasks", [str(task["id"])], log_path, env=env)
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
    from training.lifecycle import read_log_tail

    return read_log_tail(task, lines)


def run(task_id: int) -> int:
    """The task process: do what the row says, then write how it ended."""
    db = connect()
    task = task_rows.get(db, task_id)
    if task is None:
        print(f"no task {task_id}", file=sys.stderr)
        return 2

    def stopped(signum, frame):
        raise Stopped

    signal.signal(signal.SIGTERM, stopped)
    try:
        if task["kind"] == "server":
            from serving import server

            server.serve_task(db, task)
            task_rows.finish(db, task_id, "stopped")
            return 0
        result = _export(db, task)
    except Stopped:
        task_rows.finish(db, task_id, "stopped" if task["kind"] == "server" else "cancelled")
        return 1
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        task_rows.finish(db, task_id, "failed", error=str(error))
        return 2
    except Exception as error:  # the whole traceback goes to the task's log; the card gets one line
        task_rows.finish(db, task_id, "failed", error=f"{type(error).__name__}: {models.first_line(error)}")
        raise
    task_rows.finish(db, task_id, "succeeded", result=result)
    return 0


def _export(db, task: dict) -> dict:
    settings, name = task["settings"], task["adapter_name"]
    task_rows.update(db, task["id"], status="running")

    def stage(step: str) -> None:
        task_rows.update(db, task["id"], stage=step)

    if task["kind"] == "merge":
        from serving import merge

        out = merge.merge(db, name, settings["out"], dtype=settings.get("dtype", "fp32"), stage=stage)
        return {"path": str(out)}
    if task["kind"] == "gguf":
        from serving import gguf

        out = gguf.export_merged(db, name, settings["out"], outtype=settings.get("type", "f16"), stage=stage)
        return {"path": str(out), "modelfile": str(gguf.modelfile_path(out))}
    if task["kind"] == "gguf-lora":
        from serving import gguf

        stage("convert")
        out = gguf.export_lora(db, name, settings["out"], base_gguf=settings.get("base_gguf") or None)
        return {"path": str(out)}
    from serving import hub

    return {"url": hub.push(db, name, **settings, stage=stage)}


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1])))
