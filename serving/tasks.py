"""Exports and API servers as detached processes, re-attached after a reload like training jobs.

`launch` creates the task's row and has the supervisor start `python -m exporters.worker ID`, its
output appended to `tasks/<id>.log`; that process runs the action the row describes and writes its
end (succeeded with the result, failed with the message, cancelled, stopped). `stop` sends SIGTERM:
an export then removes what it had half-written, a server finishes its open responses. A task whose
process is gone without writing its end reads as interrupted (studio.supervisor.as_seen) and is
marked so by the supervisor's tick.
"""

from registry import tasks as task_rows
from registry.tasks import Task
from studio import supervisor
from studio.supervisor import EXPORT_KINDS

KINDS = (*EXPORT_KINDS, "server")


def launch(
    db, kind: str, adapter_name: str, settings: dict, *, env: dict | None = None, owner_id: int | None = None
) -> dict:
    """Create the task's row and start its process; `env` adds secrets the row must not hold."""
    if kind not in KINDS:
        raise ValueError(kind)
    task = task_rows.create(db, kind=kind, adapter_name=adapter_name, settings=settings, owner_id=owner_id)
    return supervisor.launch(db, task, env=env)


def stop(db, task_id: int) -> bool:
    return supervisor.stop(db, task_rows.get(db, task_id))


def get(db, task_id: int) -> Task | None:
    """The task as it stands (a dead process's reads as interrupted); never writes."""
    return supervisor.as_seen(task_rows.get(db, task_id))


def list_recent(db, **filters) -> list[Task]:
    return [supervisor.as_seen(task) for task in task_rows.list_recent(db, **filters)]


def log_tail(task: Task, lines: int = 20) -> str:
    return supervisor.log_tail(task, lines)
