"""Adapters with their folders: registered once the folder is complete, renamed and deleted with
the folder, all or nothing (the rows are registry.adapters; the folder checks are engine.adapters)."""

import shutil
from pathlib import Path

from sqlite_utils import Database

from core import texts
from core.errors import UserError
from engine.adapters import check_folder
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from registry import tasks as task_rows
from registry.adapters import Adapter
from studio import runs, supervisor
from studio.accounts import LOCAL, Asker, audit, changeable_adapter


def register(
    db: Database,
    *,
    name: str,
    role: str,
    base_model: str,
    prompt_format: str,
    path: Path,
    hyperparameters: dict,
    dataset_name: str = "",
    dataset_fingerprint: str = "",
    num_examples: int = 0,
    metrics: dict | None = None,
    job_id: int | None = None,
    parent_id: int | None = None,
    parent_name: str | None = None,
    method: str | None = None,
    data_source: dict | None = None,
    owner_id: int | None = None,
) -> Adapter:
    """Insert the row for an adapter whose folder is already complete on disk, after refusing a
    folder chat could not serve per request (see engine.adapters). A trained adapter belongs to
    whoever started its job."""
    check_folder(Path(path), name)
    if owner_id is None and job_id is not None:
        job = job_rows.get(db, job_id)
        owner_id = job.owner_id if job else None
    return adapter_rows.insert(
        db,
        {
            "name": name,
            "role": role,
            "base_model": base_model,
            "prompt_format": prompt_format,
            "path": str(path),
            "hyperparameters": hyperparameters,
            "dataset_name": dataset_name,
            "dataset_fingerprint": dataset_fingerprint,
            "num_examples": num_examples,
            "metrics": metrics or {},
            "job_id": job_id,
            "parent_id": parent_id,
            "parent_name": parent_name,
            "method": method,
            "data_source": data_source,
            "owner_id": owner_id,
        },
    )


def rename(db: Database, old: str, new: str, asker: Asker = LOCAL) -> Adapter:
    """Rename the row and its folder together; the folder keeps following the name."""
    changeable_adapter(db, asker, old)
    adapter, new = adapter_rows.check_new_name(db, old, new)
    old_path = Path(adapter.path)
    new_path = old_path.with_name(new)
    if new_path.exists():
        raise UserError("ERR_FOLDER_EXISTS", folder=new_path)
    if old_path.exists():
        old_path.rename(new_path)
    try:
        adapter_rows.rename_row(db, adapter, new, new_path)
    except Exception:
        if new_path.exists():
            new_path.rename(old_path)
        raise
    audit(db, "rename", asker, f"{old} -> {new}")
    return adapter_rows.get(db, new)


def share(db: Database, name: str, shared: bool, asker: Asker = LOCAL) -> Adapter:
    """Share an adapter with the team (everyone may chat with it and look at it) or keep it private."""
    adapter = changeable_adapter(db, asker, name)
    adapter_rows.set_shared(db, adapter.id, shared)
    audit(db, "share" if shared else "unshare", asker, name)
    return adapter_rows.get(db, name)


def deletion_consequences(db: Database, adapter: Adapter) -> list[str]:
    """What deleting this adapter would do beyond itself, in the reader's language: its children
    keep working (their weights are whole) and show it as deleted in their lineage; a stopped job
    that continues from it could no longer resume."""
    said = []
    children = adapter_rows.children(db, adapter)
    if children:
        said.append(
            texts.DELETE_KEEPS_CHILDREN.format(
                name=adapter.name, children=", ".join(c.name for c in children)
            )
        )
    stopped = [job for job in job_rows.needing_parent(db, adapter.name) if job.status not in job_rows.ACTIVE]
    if stopped:
        jobs = ", ".join(f"#{job.id} {job.adapter_name}" for job in stopped)
        said.append(texts.DELETE_ENDS_RESUMES.format(name=adapter.name, jobs=jobs))
    return said


def delete(db: Database, name: str, asker: Asker = LOCAL) -> Adapter:
    """Remove the adapter with its evaluations, their prediction files, its blind votes and its folder,
    all or nothing: the folder is first moved aside (one rename), then the rows go in one
    transaction; if that fails the folder is moved back. Only then are the files removed. Refused
    while a job that continues from it is queued or running (the adapter is its reference), and while
    an export, server, evaluation or pair builder of it runs (it reads the folder)."""
    changeable_adapter(db, asker, name)
    adapter = adapter_rows.require(db, name)
    supervisor.reconcile(db)
    running = [job for job in job_rows.needing_parent(db, name) if job.status in job_rows.ACTIVE]
    if running:
        jobs = ", ".join(f"#{job.id} {job.adapter_name} ({texts.STATUS[job.status]})" for job in running)
        raise UserError("ERR_PARENT_IN_USE", name=name, jobs=jobs)
    using = [task for task in task_rows.active(db) if task.adapter_name == name]
    if using:
        tasks = ", ".join(f"#{task.id} {runs.kind_label(task.kind)}" for task in using)
        raise UserError("ERR_ADAPTER_IN_USE", name=name, tasks=tasks)
    folder = Path(adapter.path)
    trash = folder.with_name(f".deleted-{folder.name}-{adapter.id}")
    moved = folder.is_dir() and not trash.exists()
    if moved:
        folder.rename(trash)
    try:
        evaluations = adapter_rows.delete_rows(db, adapter)
    except BaseException:
        if moved:
            trash.rename(folder)
        raise
    for evaluation in evaluations:
        if evaluation.predictions_path:
            Path(evaluation.predictions_path).unlink(missing_ok=True)
    shutil.rmtree(trash if moved else folder, ignore_errors=True)
    audit(db, "delete", asker, name)
    return adapter


# --- lineage --------------------------------------------------------------------------------------


def describe_data(adapter: Adapter) -> str:
    """What an adapter was trained on, as its lineage says it: votes up to #N, an adapter's own
    mistakes, a file; for supervised tuning, the dataset and its fingerprint."""
    source = adapter.data_source or {}
    records = source.get("records", adapter.num_examples)
    if source.get("kind") == "votes":
        return texts.DATA_FROM_VOTES.format(up_to=source.get("up_to_vote"), records=records)
    if source.get("kind") == "mistakes":
        return texts.DATA_FROM_MISTAKES.format(adapter=source.get("adapter"), records=records)
    if source.get("kind") == "file":
        return texts.DATA_FROM_FILE.format(file=source.get("file"), records=records)
    return texts.DATA_FROM_SFT.format(
        name=adapter.dataset_name or "–", fingerprint=adapter.dataset_fingerprint
    )


def held_out_score(adapter: Adapter) -> str:
    """The score its checkpoint was chosen by (held-out accuracy, BLEU or loss), or its final loss."""
    metrics = adapter.metrics
    if isinstance(metrics.get("chosen_score"), int | float):
        return f"{metrics['chosen_by']} {metrics['chosen_score']:.3g} @ {metrics.get('checkpoint_step')}"
    if isinstance(metrics.get("final_loss"), int | float):
        return f"loss {metrics['final_loss']:.3g}"
    return "–"


def newest_evaluation(db: Database, adapter: Adapter) -> str:
    from registry import evaluations

    found = evaluations.for_adapter(db, adapter.id)
    if not found:
        return "–"
    newest = found[0]
    scores = newest.scores
    shown = "  ".join(f"{key} {scores[key]:.2f}" for key in ("bleu", "chrf", "loss") if key in scores)
    return f"{shown} · {newest.dataset_name} ({newest.num_examples})"


def lineage_table(db: Database, adapter: Adapter) -> list[dict]:
    """The chain base → each training step → this adapter, one row each (texts.LINEAGE_COLUMNS):
    how it was trained, on what, and its scores. A deleted ancestor is named as deleted."""
    column = texts.LINEAGE_COLUMNS
    chain = adapter_rows.lineage(db, adapter)
    rows = [
        {
            column["adapter"]: adapter.base_model,
            column["training"]: texts.TRAINING_KINDS["base"],
            column["data"]: "–",
            column["score"]: "–",
            column["evaluation"]: "–",
        }
    ]
    for step in chain:
        if isinstance(step, str):
            rows.append(
                {
                    **dict.fromkeys(column.values(), "–"),
                    column["adapter"]: texts.LINEAGE_DELETED.format(name=step),
                }
            )
            continue
        rows.append(
            {
                column["adapter"]: step.name,
                column["training"]: texts.TRAINING_KINDS.get(step.kind_of_training, step.kind_of_training),
                column["data"]: describe_data(step),
                column["score"]: held_out_score(step),
                column["evaluation"]: newest_evaluation(db, step),
            }
        )
    return rows
