"""Rows of the `adapters` table: one per published adapter folder."""

import shutil
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from registry.db import from_json, now, to_json
from registry.errors import UserError
from registry.names import check_name


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
) -> dict:
    """Insert the row for an adapter whose folder is already complete on disk."""
    row = {
        "name": name,
        "role": role,
        "base_model": base_model,
        "prompt_format": prompt_format,
        "path": str(path),
        "status": "ready",
        "hyperparameters": to_json(hyperparameters),
        "dataset_name": dataset_name,
        "dataset_fingerprint": dataset_fingerprint,
        "num_examples": num_examples,
        "metrics": to_json(metrics or {}),
        "size_bytes": folder_size(path),
        "job_id": job_id,
        "created_at": now(),
    }
    with db.conn:
        db["adapters"].insert(row)
    return get(db, name)


def get(db: Database, name: str) -> dict | None:
    rows = list(db["adapters"].rows_where("name = ?", [name], limit=1))
    return _decode(rows[0]) if rows else None


def require(db: Database, name: str) -> dict:
    adapter = get(db, name)
    if adapter is None:
        known = ", ".join(a["name"] for a in list_all(db)) or "none yet"
        raise UserError(f"No adapter named {name!r} in the registry (known: {known}).")
    return adapter


def list_all(db: Database) -> list[dict]:
    return [_decode(row) for row in db["adapters"].rows_where(order_by="created_at desc")]


def folder_is_present(adapter: dict) -> bool:
    return (Path(adapter["path"]) / "adapter_model.safetensors").is_file()


def set_role(db: Database, name: str, role: str) -> None:
    with db.conn:
        db["adapters"].update(require(db, name)["id"], {"role": role})


def rename(db: Database, old: str, new: str) -> dict:
    """Rename the row and its folder together; the folder keeps following the name."""
    new = check_name(new)
    adapter = require(db, old)
    if get(db, new) is not None:
        raise UserError(f"An adapter named {new!r} already exists: pick another name.")
    old_path = Path(adapter["path"])
    new_path = old_path.with_name(new)
    if new_path.exists():
        raise UserError(f"The folder {new_path} already exists: pick another name.")
    if old_path.exists():
        old_path.rename(new_path)
    try:
        with db.conn:
            db["adapters"].update(adapter["id"], {"name": new, "path": str(new_path)})
    except Exception:
        if new_path.exists():
            new_path.rename(old_path)
        raise
    return get(db, new)


def delete(db: Database, name: str) -> None:
    """Remove the row first, so no row ever points at a folder being deleted."""
    adapter = require(db, name)
    try:
        with db.conn:
            db["adapters"].delete(adapter["id"])
    except NotFoundError:
        return
    shutil.rmtree(adapter["path"], ignore_errors=True)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _decode(row: dict) -> dict:
    row = dict(row)
    row["hyperparameters"] = from_json(row.get("hyperparameters"), {})
    row["metrics"] = from_json(row.get("metrics"), {})
    return row
