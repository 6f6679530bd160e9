"""Rows of `conversations` and `messages`: chat history that survives reloads and restarts."""

from sqlite_utils import Database

from core.errors import UserError
from registry.db import from_json, now, to_json

DEFAULT_TITLE = "新对话"


def create(
    db: Database,
    title: str = DEFAULT_TITLE,
    base_model: str = "",
    adapter: str = "",
    role: str = "",
    owner_id: int | None = None,
) -> dict:
    stamp = now()
    row = {
        "owner_id": owner_id,
        "title": title,
        "base_model": base_model,
        "adapter": adapter,
        "role": role,
        "created_at": stamp,
        "updated_at": stamp,
    }
    with db.conn:
        conversation_id = db["conversations"].insert(row).last_pk
    return get(db, conversation_id)


def get(db: Database, conversation_id: int) -> dict | None:
    rows = list(db["conversations"].rows_where("id = ?", [conversation_id], limit=1))
    return rows[0] if rows else None


def list_all(db: Database) -> list[dict]:
    return list(db["conversations"].rows_where(order_by="updated_at desc, id desc"))


def update(db: Database, conversation_id: int, **fields) -> None:
    with db.conn:
        db["conversations"].update(conversation_id, {**fields, "updated_at": now()})


def rename(db: Database, conversation_id: int, title: str) -> None:
    title = (title or "").strip()
    if not title:
        raise UserError("ERR_EMPTY_TITLE")
    update(db, conversation_id, title=title[:100])


def delete(db: Database, conversation_id: int) -> None:
    with db.conn:
        db["messages"].delete_where("conversation_id = ?", [conversation_id])
        db["conversations"].delete_where("id = ?", [conversation_id])


def add_message(
    db: Database,
    conversation_id: int,
    role: str,
    content: str,
    *,
    base_model: str = "",
    adapter: str = "",
    chat_role: str = "",
    settings: dict | None = None,
) -> dict:
    row = {
        "conversation_id": conversation_id,
        "role": role,
        "content": content,
        "base_model": base_model,
        "adapter": adapter,
        "chat_role": chat_role,
        "settings": to_json(settings or {}),
        "created_at": now(),
    }
    with db.conn:
        message_id = db["messages"].insert(row).last_pk
        db["conversations"].update(conversation_id, {"updated_at": row["created_at"]})
    return {**row, "id": message_id, "settings": settings or {}}


def messages(db: Database, conversation_id: int) -> list[dict]:
    rows = db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id")
    return [{**row, "settings": from_json(row["settings"], {})} for row in rows]
