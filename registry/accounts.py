"""Rows of team mode: accounts, their setup codes, sessions and API keys, sign-in attempts, and the
audit trail. Secrets never reach these rows in the clear: studio.accounts hashes them first."""

from dataclasses import dataclass, fields

from sqlite_utils import Database

from registry.db import now

ROLES = ("owner", "member", "viewer")


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str  # owner | member | viewer
    password_hash: str | None
    email: str | None
    max_jobs: int | None
    created_at: float
    disabled_at: float | None

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


_ACCOUNT_COLUMNS = tuple(field.name for field in fields(Account))


def _account(row: dict | None) -> Account | None:
    return Account(**{name: row.get(name) for name in _ACCOUNT_COLUMNS}) if row else None


def create(db: Database, name: str, role: str, email: str | None = None) -> Account:
    with db.conn:
        account_id = (
            db["accounts"].insert({"name": name, "role": role, "email": email, "created_at": now()}).last_pk
        )
    return by_id(db, account_id)


def by_id(db: Database, account_id: int | None) -> Account | None:
    if account_id is None:
        return None
    return _account(next(db["accounts"].rows_where("id = ?", [account_id], limit=1), None))


def by_name(db: Database, name: str) -> Account | None:
    return _account(next(db["accounts"].rows_where("name = ?", [name], limit=1), None))


def by_email(db: Database, email: str) -> Account | None:
    rows = db["accounts"].rows_where("lower(email) = lower(?) and disabled_at is null", [email], limit=1)
    return _account(next(rows, None))


def list_all(db: Database) -> list[Account]:
    return [_account(row) for row in db["accounts"].rows_where(order_by="id")]


def count(db: Database) -> int:
    return db["accounts"].count


def owners(db: Database) -> list[Account]:
    return [account for account in list_all(db) if account.is_owner and not account.disabled_at]


def update(db: Database, account_id: int, **values) -> None:
    with db.conn:
        db["accounts"].update(account_id, values)


def names_by_id(db: Database) -> dict[int, str]:
    return {row["id"]: row["name"] for row in db["accounts"].rows_where(select="id, name")}


# Setup codes, sessions and keys: rows keyed by the hash of what the person holds.


def add_setup_code(db: Database, account_id: int, code_hash: str, expires_at: float) -> None:
    with db.conn:
        # a new code replaces the account's unused ones
        db.execute(
            "update setup_codes set used_at = ? where account_id = ? and used_at is null", [now(), account_id]
        )
        db["setup_codes"].insert(
            {"account_id": account_id, "code_hash": code_hash, "created_at": now(), "expires_at": expires_at}
        )


def open_setup_codes(db: Database, account_id: int) -> list[dict]:
    """The account's codes not yet used (expired ones too: the caller says which refusal applies)."""
    return list(
        db["setup_codes"].rows_where("account_id = ? and used_at is null", [account_id], order_by="id desc")
    )


def use_setup_code(db: Database, code_id: int) -> bool:
    """Mark a code used; False when another request used it first."""
    with db.conn:
        cursor = db.execute(
            "update setup_codes set used_at = ? where id = ? and used_at is null", [now(), code_id]
        )
    return cursor.rowcount == 1


def add_session(
    db: Database, account_id: int, token_hash: str, how: str, address: str, expires_at: float
) -> None:
    with db.conn:
        db["sessions"].insert(
            {
                "account_id": account_id,
                "token_hash": token_hash,
                "how": how,
                "address": address,
                "created_at": now(),
                "expires_at": expires_at,
            }
        )


def live_session(db: Database, token_hash: str) -> dict | None:
    rows = db["sessions"].rows_where(
        "token_hash = ? and ended_at is null and expires_at > ?", [token_hash, now()], limit=1
    )
    return next(rows, None)


def end_session(db: Database, token_hash: str) -> None:
    with db.conn:
        db.execute(
            "update sessions set ended_at = ? where token_hash = ? and ended_at is null", [now(), token_hash]
        )


def end_sessions_of(db: Database, account_id: int) -> None:
    with db.conn:
        db.execute(
            "update sessions set ended_at = ? where account_id = ? and ended_at is null", [now(), account_id]
        )


def add_key(db: Database, account_id: int, label: str, prefix: str, key_hash: str) -> int:
    with db.conn:
        return (
            db["api_keys"]
            .insert(
                {
                    "account_id": account_id,
                    "label": label,
                    "prefix": prefix,
                    "key_hash": key_hash,
                    "created_at": now(),
                }
            )
            .last_pk
        )


def live_key(db: Database, key_hash: str) -> dict | None:
    rows = db["api_keys"].rows_where("key_hash = ? and revoked_at is null", [key_hash], limit=1)
    return next(rows, None)


def keys_of(db: Database, account_id: int) -> list[dict]:
    rows = db["api_keys"].rows_where(
        "account_id = ?",
        [account_id],
        order_by="id desc",
        select="id, label, prefix, created_at, last_used_at, revoked_at",
    )
    return list(rows)


def revoke_key(db: Database, account_id: int, key_id: int) -> bool:
    with db.conn:
        cursor = db.execute(
            "update api_keys set revoked_at = ? where id = ? and account_id = ? and revoked_at is null",
            [now(), key_id, account_id],
        )
    return cursor.rowcount == 1


def touch_key(db: Database, key_id: int) -> None:
    with db.conn:
        db.execute("update api_keys set last_used_at = ? where id = ?", [now(), key_id])


# Sign-in attempts (for throttling) and the audit trail.


def record_attempt(db: Database, name: str, address: str, succeeded: bool) -> None:
    with db.conn:
        db["login_attempts"].insert(
            {"name": name, "address": address, "succeeded": int(succeeded), "at": now()}
        )


def failures_since(
    db: Database, since: float, *, name: str | None = None, address: str | None = None
) -> list[float]:
    """Times of failed attempts since `since` for a name or an address, oldest first."""
    column, value = ("name", name) if name is not None else ("address", address)
    rows = db.execute(
        f"select at from login_attempts where {column} = ? and succeeded = 0 and at > ? order by at",  # noqa: S608
        [value, since],
    )
    return [row[0] for row in rows.fetchall()]


def record_audit(
    db: Database, action: str, *, account: Account | None, obj: str = "", address: str = ""
) -> None:
    with db.conn:
        db["audit"].insert(
            {
                "at": now(),
                "account_id": account.id if account else None,
                "account_name": account.name if account else None,
                "action": action,
                "object": obj,
                "address": address,
            }
        )


def audit_trail(db: Database, limit: int = 500, action: str | None = None) -> list[dict]:
    where, values = ("action = ?", [action]) if action else (None, [])
    return list(db["audit"].rows_where(where, values, order_by="id desc", limit=limit))
