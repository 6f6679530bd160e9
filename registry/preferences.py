"""Rows of `preferences`: choices a person makes once for the studio, such as its language."""

from sqlite_utils import Database


def get(db: Database, key: str, default: str = "") -> str:
    rows = list(db["preferences"].rows_where("key = ?", [key]))
    return rows[0]["value"] if rows else default


def put(db: Database, key: str, value: str) -> None:
    db["preferences"].upsert({"key": key, "value": value}, pk="key")
