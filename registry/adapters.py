"""Rows of the `adapters` table: one per published adapter folder."""

import shutil
from pathlib import Path

from sqlite_utils import Database

from engine import texts
from registry import votes
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
    """Insert the row for an adapter whose folder is already complete on disk, after refusing a
    folder chat could not serve per request (see engine.adapters)."""
    from engine.adapters import check_folder

    check_folder(Path(path), name)
    row = {
        "name": name,
        "role": role,
        "base_model": base_model,
        "prompt_format": prompt_format,
        "path": str(path),
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
        raise UserError(texts.ERR_NO_SUCH_ADAPTER.format(name=name, known=known))
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
    if new == old:
        raise UserError(texts.ERR_SAME_NAME.format(name=old))
    if get(db, new) is not None:
        raise UserError(texts.ERR_ADAPTER_EXISTS.format(name=new))
    old_path = Path(adapter["path"])
    new_path = old_path.with_name(new)
    if new_path.exists():
        raise UserError(texts.ERR_FOLDER_EXISTS.format(folder=new_path))
    if old_path.exists():
        old_path.rename(new_path)
    try:
        with db.conn:
            db["adapters"].update(adapter["id"], {"name": new, "path": str(new_path)})
            votes.rename(db, adapter["base_model"], old, new)
    except Exception:
        if new_path.exists():
            new_path.rename(old_path)
        raise
    return get(db, new)


def delete(db: Database, name: str) -> dict:
    """Remove the adapter with its evaluations, their prediction files, its blind votes and its folder,
    all or nothing:
    the folder is first moved aside (one rename), then the rows go in one transaction; if that fails
    the folder is moved back. Only then are the files removed."""
    adapter = require(db, name)
    folder = Path(adapter["path"])
    trash = folder.with_name(f".deleted-{folder.name}-{adapter['id']}")
    moved = folder.is_dir() and not trash.exists()
    if moved:
        folder.rename(trash)
    try:
        evaluations = list(db["evaluations"].rows_where("adapter_id = ?", [adapter["id"]]))
        with db.conn:
            db["evaluations"].delete_where("adapter_id = ?", [adapter["id"]])
            votes.forget(db, adapter["base_model"], name)
            db["adapters"].delete(adapter["id"])
    except BaseException:
        if moved:
            trash.rename(folder)
        raise
    for evaluation in evaluations:
        if evaluation["predictions_path"]:
            Path(evaluation["predictions_path"]).unlink(missing_ok=True)
    shutil.rmtree(trash if moved else folder, ignore_errors=True)
    return adapter


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _decode(row: dict) -> dict:
    row = dict(row)
    row["hyperparameters"] = from_json(row.get("hyperparameters"), {})
    row["metrics"] = from_json(row.get("metrics"), {})
    return row
