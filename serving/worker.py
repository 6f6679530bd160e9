"""The process of one serving task: `python -m serving.worker ID` (what serving.tasks starts; not for
people). It does what the task's row describes, through the table of kinds below, and writes how it
ended: succeeded with the result, failed with the message, cancelled, or stopped (a server)."""

import signal
import sys

from core import errors
from core.errors import UserError
from registry import connect
from registry import tasks as task_rows
from registry.tasks import Task
from serving import gguf, hub, merge, server


class Stopped(BaseException):
    """SIGTERM in a task process: unwinds through every cleanup, as KeyboardInterrupt would."""


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
        if task.kind == "server":
            server.serve_task(db, task)
            task_rows.finish(db, task_id, "stopped")
            return 0
        task_rows.update(db, task.id, status="running")
        result = EXPORTS[task.kind](db, task, _stage_writer(db, task))
    except Stopped:
        task_rows.finish(db, task_id, "stopped" if task.kind == "server" else "cancelled")
        return 1
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        task_rows.finish(db, task_id, "failed", error=str(error))
        return 2
    except Exception as error:  # the whole traceback goes to the task's log; the card gets one line
        task_rows.finish(db, task_id, "failed", error=f"{type(error).__name__}: {errors.first_line(error)}")
        raise
    task_rows.finish(db, task_id, "succeeded", result=result)
    return 0


def _stage_writer(db, task: Task):
    def stage(step: str) -> None:
        task_rows.update(db, task.id, stage=step)

    return stage


def _merge(db, task: Task, stage) -> dict:
    settings = task.settings
    dtype = settings.get("dtype", "fp32")
    out = merge.merge(db, task.adapter_name, settings["out"], dtype=dtype, stage=stage)
    return {"path": str(out)}


def _gguf(db, task: Task, stage) -> dict:
    settings = task.settings
    out = gguf.export_merged(
        db, task.adapter_name, settings["out"], outtype=settings.get("type", "f16"), stage=stage
    )
    return {"path": str(out), "modelfile": str(gguf.modelfile_path(out))}


def _gguf_lora(db, task: Task, stage) -> dict:
    settings = task.settings
    stage("convert")
    base_gguf = settings.get("base_gguf") or None
    out = gguf.export_lora(db, task.adapter_name, settings["out"], base_gguf=base_gguf)
    return {"path": str(out)}


def _push(db, task: Task, stage) -> dict:
    return {"url": hub.push(db, task.adapter_name, **task.settings, stage=stage)}


# serving.tasks.EXPORT_KINDS names the same kinds; a test holds the two together.
EXPORTS = {"merge": _merge, "gguf": _gguf, "gguf-lora": _gguf_lora, "push": _push}


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1])))
