"""What the Adapters page's Export section asks for: where each export goes, the checks that can be
made before a task starts (so a mistake is a message at once, not a failed task a minute later),
and what a task's row means to a person."""

import time
from pathlib import Path

from core import home, texts
from core.errors import UserError
from core.texts import Message
from exporters import gguf, hub, llama_cpp, merge
from registry import tasks as task_rows
from registry.tasks import Task
from serving import server, tasks
from studio.accounts import LOCAL, Asker, audit, changeable_adapter


def exports_dir() -> Path:
    return home.home() / "exports"


def free_output(adapter_name: str, kind: str, gguf_type: str = "f16") -> Path:
    """A path under exports/ that does not exist yet: exports never overwrite."""
    stem, suffix = {
        "merge": (f"{adapter_name}-merged", ""),
        "gguf": (f"{adapter_name}-{gguf_type}", ".gguf"),
        "gguf-lora": (f"{adapter_name}-lora", ".gguf"),
    }[kind]
    candidate, number = exports_dir() / f"{stem}{suffix}", 2
    while candidate.exists() or candidate.with_name(f"{candidate.stem}.Modelfile").exists():
        candidate, number = exports_dir() / f"{stem}-{number}{suffix}", number + 1
    return candidate


def start(db, adapter_name: str, kind: str, asker: Asker = LOCAL, **settings) -> dict:
    """Check what can be checked now, then launch the export as a detached task (for whoever may
    change the adapter: an export takes a private adapter out of the studio)."""
    adapter = changeable_adapter(db, asker, adapter_name)
    if kind in ("merge", "gguf", "gguf-lora"):
        settings["out"] = str(
            Path(settings.get("out") or free_output(adapter_name, kind, settings.get("type", "f16")))
        )
        merge.export_target(db, adapter_name, settings["out"])
    if kind == "merge" and settings.get("dtype", "fp32") not in merge.DTYPES:
        raise UserError("ERR_MERGE_DTYPE", dtype=settings["dtype"], choices=", ".join(merge.DTYPES))
    if kind in ("gguf", "gguf-lora"):
        gguf.check_export(
            db, adapter_name, settings["out"], settings.get("type", "f16" if kind == "gguf" else "f32")
        )
    if kind == "push":  # the token itself stays in the environment, out of the task's row
        hub.check_push(settings.get("hub"), settings.get("repo"))
    if active_for(db, adapter_name, kind):
        raise UserError("ERR_EXPORT_RUNNING", name=adapter.name, kind=Message(f"EXPORT_KINDS.{kind}"))
    task = tasks.launch(db, kind, adapter_name, settings, owner_id=asker.id)
    audit(db, "push" if kind == "push" else "export", asker, f"{adapter_name} ({kind})")
    return task


def active_for(db, adapter_name: str, kind: str) -> Task | None:
    rows = tasks.list_recent(db, adapter_name=adapter_name, kind=kind, limit=5)
    return next((row for row in rows if row.status in task_rows.ACTIVE), None)


def for_adapter(db, adapter_name: str) -> list[Task]:
    """Its exports and servers (not the training side's tasks: mistakes, evaluations), newest first."""
    return [t for t in tasks.list_recent(db, adapter_name=adapter_name, limit=30) if t.kind in tasks.KINDS][
        :10
    ]


def describe(task: Task) -> str:
    """One line: what, its status (and stage while it runs, with the time so far)."""
    kind = texts.EXPORT_KINDS.get(task.kind, task.kind)
    status = texts.TASK_STATUS.get(task.status, task.status)
    if task.status in task_rows.ACTIVE:
        stage = texts.TASK_STAGES.get(task.stage or "", "")
        elapsed = int(time.time() - task.created_at)
        return texts.TASK_RUNNING_LINE.format(kind=kind, status=status, stage=stage, seconds=elapsed)
    return f"{kind} · {status}"


def modelfiles(db, adapter_name: str) -> list[str]:
    """The Modelfiles of this adapter's finished GGUF exports that are still on disk."""
    return [
        task.result["modelfile"]
        for task in for_adapter(db, adapter_name)
        if task.kind == "gguf" and task.status == "succeeded" and Path(task.result["modelfile"]).is_file()
    ]


def ollama_command(adapter_name: str, modelfile: str) -> str:
    return f"ollama create {adapter_name} -f {modelfile}"


def api_snippet(url: str, model: str) -> str:
    """Python that calls a running server with this adapter."""
    return (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}", api_key="unused")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}", messages=[{{"role": "user", "content": "The patient has a fever."}}]\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )


def server_for(db, base_model: str) -> Task | None:
    """A running (or starting) API server of this base model, if any."""
    return next((t for t in server.running(db) if t.settings.get("base") == base_model), None)


def converters_ready() -> bool:
    try:
        llama_cpp.converters()
    except UserError:
        return False
    return True
