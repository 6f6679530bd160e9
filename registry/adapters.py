"""Rows of the `adapters` table: one per published adapter folder."""

from dataclasses import dataclass, fields
from pathlib import Path

from sqlite_utils import Database

from core.errors import UserError
from core.names import check_name
from core.texts import Message
from registry import evaluations, jobs, votes
from registry.db import from_json, now, to_json


@dataclass(frozen=True)
class Adapter:
    """A published adapter: its folder, what it was trained on and how, and its training's figures."""

    id: int
    name: str
    role: str
    base_model: str
    prompt_format: str
    path: str
    hyperparameters: dict
    dataset_name: str | None
    dataset_fingerprint: str | None
    num_examples: int | None
    metrics: dict  # final_loss, steps, checkpoint_step, … as the trainer summarised them
    size_bytes: int | None
    job_id: int | None  # the job that trained it; None for an imported folder
    created_at: float
    parent_id: int | None = None  # the adapter it continued from (None: from the base, or deleted)
    parent_name: str | None = None  # kept when the parent is deleted, to say which it was
    method: str | None = None  # sft | dpo | orpo | kto (None: sft, registered before lineage)
    data_source: dict | None = None  # where preference data came from (votes, a file, self-made)
    owner_id: int | None = None  # the account that made it (team mode; None: the studio's owner)
    shared: int = 0  # 1: every account of the team may chat with it and look at it

    @property
    def kind_of_training(self) -> str:
        return self.method or "sft"


def insert(db: Database, row: dict) -> Adapter:
    """Insert the row of an adapter whose folder is complete on disk (studio.adapters checks it)."""
    row = {
        **row,
        "hyperparameters": to_json(row.get("hyperparameters") or {}),
        "metrics": to_json(row.get("metrics") or {}),
        "data_source": to_json(row["data_source"]) if row.get("data_source") else None,
        "size_bytes": folder_size(row["path"]),
        "created_at": now(),
    }
    with db.conn:
        db["adapters"].insert(row)
    return get(db, row["name"])


def get(db: Database, name: str) -> Adapter | None:
    rows = list(db["adapters"].rows_where("name = ?", [name], limit=1))
    return _decode(rows[0]) if rows else None


def require(db: Database, name: str) -> Adapter:
    adapter = get(db, name)
    if adapter is None:
        known = ", ".join(a.name for a in list_all(db)) or Message("NOTHING")
        raise UserError("ERR_NO_SUCH_ADAPTER", name=name, known=known)
    return adapter


def list_all(db: Database) -> list[Adapter]:
    return [_decode(row) for row in db["adapters"].rows_where(order_by="created_at desc")]


def by_id(db: Database, adapter_id: int | None) -> Adapter | None:
    if adapter_id is None:
        return None
    rows = list(db["adapters"].rows_where("id = ?", [adapter_id], limit=1))
    return _decode(rows[0]) if rows else None


def children(db: Database, adapter: Adapter) -> list[Adapter]:
    """The adapters trained on top of this one, oldest first."""
    rows = db["adapters"].rows_where("parent_id = ?", [adapter.id], order_by="created_at")
    return [_decode(row) for row in rows]


def lineage(db: Database, adapter: Adapter) -> list[Adapter | str]:
    """The chain from the oldest known ancestor to this adapter; a deleted ancestor appears as its
    name (a string), and the chain stops there."""
    chain: list[Adapter | str] = [adapter]
    seen = {adapter.id}
    current = adapter
    while current.parent_name:
        parent = by_id(db, current.parent_id)
        if parent is None or parent.id in seen:
            chain.append(current.parent_name)
            break
        chain.append(parent)
        seen.add(parent.id)
        current = parent
    return chain[::-1]


def folder_is_present(adapter: Adapter) -> bool:
    return (Path(adapter.path) / "adapter_model.safetensors").is_file()


def set_role(db: Database, name: str, role: str) -> None:
    with db.conn:
        db["adapters"].update(require(db, name).id, {"role": role})


def set_shared(db: Database, adapter_id: int, shared: bool) -> None:
    with db.conn:
        db["adapters"].update(adapter_id, {"shared": int(shared)})


def check_new_name(db: Database, old: str, new: str) -> tuple[Adapter, str]:
    """The adapter to rename and its new name, checked: a safe name, not its own, not taken."""
    new = check_name(new)
    adapter = require(db, old)
    if new == old:
        raise UserError("ERR_SAME_NAME", name=old)
    if get(db, new) is not None:
        raise UserError("ERR_ADAPTER_EXISTS", name=new)
    return adapter, new


def rename_row(db: Database, adapter: Adapter, new: str, new_path: Path) -> None:
    """The row, its blind votes, its children's lineage and the unfinished jobs that continue from
    it take the new name in one transaction."""
    with db.conn:
        db["adapters"].update(adapter.id, {"name": new, "path": str(new_path)})
        votes.rename(db, adapter.base_model, adapter.name, new)
        db.execute("update adapters set parent_name = ? where parent_id = ?", [new, adapter.id])
        jobs.rename_parent(db, adapter.name, new)


def delete_rows(db: Database, adapter: Adapter) -> list[evaluations.Evaluation]:
    """Remove the adapter's row, its evaluations and its blind votes in one transaction; returns
    the evaluations, whose prediction files the caller removes."""
    scored = evaluations.for_adapter(db, adapter.id)
    with db.conn:
        db["evaluations"].delete_where("adapter_id = ?", [adapter.id])
        votes.forget(db, adapter.base_model, adapter.name)
        # children keep their own weights and the parent's name; the link to a row goes
        db.execute("update adapters set parent_id = null where parent_id = ?", [adapter.id])
        db["adapters"].delete(adapter.id)
    return scored


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


_COLUMNS = tuple(field.name for field in fields(Adapter))


def _decode(row: dict) -> Adapter:
    values = {name: row.get(name) for name in _COLUMNS}
    values["hyperparameters"] = from_json(row.get("hyperparameters"), {})
    values["metrics"] = from_json(row.get("metrics"), {})
    values["data_source"] = from_json(row.get("data_source"), None)
    values["shared"] = row.get("shared") or 0
    return Adapter(**values)
