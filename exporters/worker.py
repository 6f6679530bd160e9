"""The process of one serving task: `python -m exporters.worker ID` (what serving.tasks starts; not for
people). It does what the task's row describes, through the table of kinds below; the supervisor's
`run_task` writes how it ended: succeeded with the result, failed with the message, cancelled, or
stopped (a server)."""

import sys

from exporters import gguf, hub, merge
from registry.tasks import Task
from serving import server
from studio import supervisor


def run(task_id: int) -> int:
    """The task process: do what the row says, then write how it ended."""
    return supervisor.run_task(task_id, _work)


def _work(db, task: Task, stage):
    if task.kind == "server":
        server.serve_task(db, task)
        return None
    return EXPORTS[task.kind](db, task, stage)


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
    pushed = hub.push(db, task.adapter_name, **task.settings, stage=stage)
    # the note as its code and fields: the card reads it in its reader's language
    return {"url": pushed.url, **({"note": pushed.note.as_json()} if pushed.note else {})}


# serving.tasks.EXPORT_KINDS names the same kinds; a test holds the two together.
EXPORTS = {"merge": _merge, "gguf": _gguf, "gguf-lora": _gguf_lora, "push": _push}


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1])))
