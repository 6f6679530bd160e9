"""Rows of `roles`: the custom roles a user added next to the built-in ones."""

from sqlite_utils import Database

from registry.db import from_json, now, to_json


def save(
    db: Database,
    *,
    name: str,
    title: str,
    system_prompt: str,
    instruction: str,
    decoding: dict,
    uses_history: bool,
    prompt_format: str,
    metric: str,
) -> None:
    row = {
        "prompt_format": prompt_format,
        "metric": metric,
        "name": name,
        "title": title,
        "system_prompt": system_prompt,
        "instruction": instruction,
        "decoding": to_json(decoding),
        "uses_history": int(uses_history),
        "created_at": now(),
    }
    with db.conn:
        db["roles"].upsert(row, pk="name")


def get(db: Database, name: str) -> dict | None:
    rows = list(db["roles"].rows_where("name = ?", [name], limit=1))
    return _decode(rows[0]) if rows else None


def list_all(db: Database) -> list[dict]:
    return [_decode(row) for row in db["roles"].rows_where(order_by="name")]


def delete(db: Database, name: str) -> None:
    with db.conn:
        db["roles"].delete_where("name = ?", [name])


def _decode(row: dict) -> dict:
    return {**row, "decoding": from_json(row["decoding"], {}), "uses_history": bool(row["uses_history"])}
