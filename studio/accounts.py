"""Team mode: who is asking, and what they may do.

A studio started without team mode has one person, `LOCAL`, who may do everything (today's
laptop). With `--team` (or TRANSLATOR_TEAM=1) every page, URL, CLI and API request carries an
`Asker`: an account, signed in with a password set through a one-time setup code, through the lab's
identity provider, or with a personal API key. Every object a person makes records its owner; a
member sees and changes their own, the owner everyone's, and adapters shared with the team can be
read and chatted with by all.

Passwords and setup codes are hashed with argon2id (argon2-cffi); session tokens and API keys are
256-bit random values, stored as their SHA-256 (a fast hash is enough for a value nobody can guess,
and lets a request find its key by hash). None of them is logged.
"""

import hashlib
import os
import secrets
import sys
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core import texts
from core.errors import UserError
from core.names import check_name
from registry import accounts as rows
from registry import adapters as adapter_rows
from registry import preferences
from registry.accounts import ROLES, Account

TEAM_VARIABLE = "TRANSLATOR_TEAM"
SETUP_CODE_SECONDS = 24 * 3600
SESSION_SECONDS = 7 * 24 * 3600
THROTTLE_WINDOW = 15 * 60
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 20
MIN_PASSWORD = 10
KEY_PREFIX = "sk-tr-"

_hasher = PasswordHasher()
# Verified when a name is unknown, so an unknown name costs the same time as a wrong password.
_UNKNOWN_ACCOUNT_HASH = _hasher.hash(secrets.token_urlsafe(16))


def team_mode(argv: list[str] | None = None) -> bool:
    """On with `--team` among the entry script's arguments or TRANSLATOR_TEAM=1; off otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    return "--team" in argv or os.environ.get(TEAM_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Asker:
    """Who asks: an account in team mode (`account`), or the one person of a single-user studio."""

    account: Account | None
    address: str = ""

    @property
    def id(self) -> int | None:
        return self.account.id if self.account else None

    @property
    def name(self) -> str:
        return self.account.name if self.account else ""

    @property
    def sees_everything(self) -> bool:
        return self.account is None or self.account.is_owner

    @property
    def may_train(self) -> bool:
        return self.account is None or self.account.role != "viewer"

    def owns(self, owner_id: int | None) -> bool:
        """Whether an object with this owner (None: made before team mode, the owner's) is theirs to
        change: their own, or anything for the studio's owner."""
        if self.sees_everything:
            return True
        return owner_id is not None and owner_id == self.account.id

    def lists(self, owner_id: int | None) -> bool:
        """Whether an object appears in this person's own lists (conversations, votes): theirs, and
        for the owner also what was made before team mode."""
        if self.account is None:
            return True
        return owner_id == self.account.id or (owner_id is None and self.account.is_owner)

    def may_see_adapter(self, adapter) -> bool:
        return self.owns(adapter.owner_id) or bool(adapter.shared)

    def may_change(self, owner_id: int | None, what: str, name) -> None:
        """Refuse, as if the object did not exist, what is not theirs: the refusal must not tell a
        member that another account has an object of that name."""
        if not self.owns(owner_id):
            raise UserError("ERR_NOT_FOUND_FOR_YOU", what=texts.Message(f"OBJECT_KINDS.{what}"), name=name)

    def owner_for_new(self) -> int | None:
        return self.id


LOCAL = Asker(None)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_code() -> str:
    # 4 groups of 4 from an alphabet without look-alikes: easy to read out, 80 bits
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def create_account(
    db, name: str, role: str = "member", *, email: str | None = None, by: Asker = LOCAL
) -> tuple:
    """A new account and its first setup code (account, code): the code is shown once and expires."""
    name = check_name(name, "account")
    if role not in ROLES:
        raise UserError("ERR_ACCOUNT_ROLE", role=role, roles=", ".join(ROLES))
    if by.account is not None and not by.account.is_owner:
        raise UserError("ERR_OWNER_ONLY")
    if rows.by_name(db, name) is not None:
        raise UserError("ERR_ACCOUNT_EXISTS", name=name)
    email = (email or "").strip() or None
    account = rows.create(db, name, role, email)
    code = issue_setup_code(db, account)
    rows.record_audit(db, "account_created", account=by.account, obj=f"{name} ({role})", address=by.address)
    return account, code


def issue_setup_code(db, account: Account, seconds: float = SETUP_CODE_SECONDS) -> str:
    code = _new_code()
    rows.add_setup_code(db, account.id, _hasher.hash(code), time.time() + seconds)
    return code


def ensure_owner(db, name: str = "owner") -> str | None:
    """The first start in team mode: the owner account and its setup code (printed by the caller,
    never a default password). None when the registry already has accounts."""
    if rows.count(db):
        return None
    _, code = create_account(db, name, "owner")
    return code


def redeem_setup_code(db, name: str, code: str, password: str, address: str = "") -> Account:
    """Set a password with a one-time setup code. Refusals say what is wrong with the code without
    saying whether the name exists: an unknown name reads like a wrong code."""
    _check_password(password)
    account = rows.by_name(db, (name or "").strip())
    throttle(db, (name or "").strip(), address)
    code = (code or "").strip().upper()
    if account is not None and not account.disabled_at:
        for row in rows.open_setup_codes(db, account.id):
            if not _verifies(row["code_hash"], code):
                continue
            if row["expires_at"] < time.time():
                raise UserError("ERR_SETUP_CODE_EXPIRED")
            if not rows.use_setup_code(db, row["id"]):
                break  # used by another request a moment ago
            rows.update(db, account.id, password_hash=_hasher.hash(password))
            rows.end_sessions_of(db, account.id)
            rows.record_attempt(db, account.name, address, True)
            rows.record_audit(db, "password_set", account=account, address=address)
            return rows.by_id(db, account.id)
    else:
        _verifies(_UNKNOWN_ACCOUNT_HASH, code)
    rows.record_attempt(db, (name or "").strip(), address, False)
    rows.record_audit(db, "setup_code_refused", account=account, obj=(name or "").strip(), address=address)
    raise UserError("ERR_SETUP_CODE_WRONG")


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise UserError("ERR_PASSWORD_SHORT", length=MIN_PASSWORD)


def _verifies(stored: str | None, given: str) -> bool:
    try:
        return bool(stored) and _hasher.verify(stored, given)
    except (VerificationError, InvalidHashError):
        return False


def throttle(db, name: str, address: str) -> None:
    """Refuse while a name or an address has too many recent failures (whether or not the name
    exists, so the refusal tells nothing about accounts)."""
    since = time.time() - THROTTLE_WINDOW
    for failures, limit in (
        (rows.failures_since(db, since, name=name), MAX_FAILURES_PER_NAME),
        (rows.failures_since(db, since, address=address), MAX_FAILURES_PER_ADDRESS),
    ):
        if len(failures) >= limit:
            wait = failures[-limit] + THROTTLE_WINDOW - time.time()
            raise UserError("ERR_TOO_MANY_FAILURES", minutes=max(1, round(wait / 60)))


def sign_in(db, name: str, password: str, address: str = "") -> tuple[Account, str]:
    """(account, session token) for a right name and password; one refusal for everything else."""
    name = (name or "").strip()
    throttle(db, name, address)
    account = rows.by_name(db, name)
    usable = account is not None and not account.disabled_at and account.password_hash
    if not _verifies(account.password_hash if usable else _UNKNOWN_ACCOUNT_HASH, password or ""):
        rows.record_attempt(db, name, address, False)
        rows.record_audit(db, "login_failed", account=account if usable else None, obj=name, address=address)
        raise UserError("ERR_SIGN_IN_REFUSED")
    rows.record_attempt(db, name, address, True)
    if _hasher.check_needs_rehash(account.password_hash):
        rows.update(db, account.id, password_hash=_hasher.hash(password))
    return account, start_session(db, account, "password", address)


def start_session(db, account: Account, how: str, address: str = "") -> str:
    token = secrets.token_urlsafe(32)
    rows.add_session(db, account.id, hash_secret(token), how, address, time.time() + SESSION_SECONDS)
    rows.record_audit(db, "login", account=account, obj=how, address=address)
    return token


def session_account(db, token: str | None) -> Account | None:
    """The account of a live session token; None for a forged, ended or expired one."""
    if not token:
        return None
    session = rows.live_session(db, hash_secret(token))
    account = rows.by_id(db, session["account_id"]) if session else None
    return account if account is not None and not account.disabled_at else None


def sign_out(db, token: str, asker: Asker) -> None:
    rows.end_session(db, hash_secret(token))
    rows.record_audit(db, "logout", account=asker.account, address=asker.address)


def sign_in_from_provider(db, claims: dict, address: str = "") -> tuple[Account, str]:
    """A session for the account whose email the identity provider verified; the owner creates
    accounts, so an unknown person is refused with who to ask."""
    email = (claims.get("email") or "").strip()
    if not email or claims.get("email_verified") is False:
        raise UserError("ERR_PROVIDER_NO_EMAIL")
    account = rows.by_email(db, email)
    if account is None:
        rows.record_audit(db, "login_failed", account=None, obj=email, address=address)
        raise UserError("ERR_PROVIDER_UNKNOWN", email=email)
    return account, start_session(db, account, "oidc", address)


# Personal API keys.


def create_key(db, asker: Asker, label: str = "") -> str:
    """A new key for the asker's account, returned once; only its hash and prefix are kept."""
    if asker.account is None:
        raise UserError("ERR_KEYS_NEED_TEAM")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = rows.add_key(
        db, asker.id, (label or "").strip()[:60], key[: len(KEY_PREFIX) + 4], hash_secret(key)
    )
    rows.record_audit(db, "key_created", account=asker.account, obj=f"#{key_id}", address=asker.address)
    return key


def revoke_key(db, asker: Asker, key_id: int) -> None:
    if not rows.revoke_key(db, asker.id, key_id):
        raise UserError("ERR_KEY_UNKNOWN", id=key_id)
    rows.record_audit(db, "key_revoked", account=asker.account, obj=f"#{key_id}", address=asker.address)


def key_account(db, key: str | None) -> Account | None:
    """The account a live key belongs to; None for an unknown or revoked key."""
    if not key:
        return None
    row = rows.live_key(db, hash_secret(key))
    if row is None:
        return None
    account = rows.by_id(db, row["account_id"])
    if account is None or account.disabled_at:
        return None
    rows.touch_key(db, row["id"])
    return account


KEY_VARIABLE = "TRANSLATOR_KEY"
TEAM_PREFERENCE = "team_mode"


def team_on(db) -> bool:
    """Whether a process other than the app (a command line, the API server) works in team mode:
    TRANSLATOR_TEAM is set, or the app's last start was with --team."""
    return team_mode([]) or preferences.get(db, TEAM_PREFERENCE, "off") == "on"


def cli_asker(db) -> Asker:
    """Who runs a command line: LOCAL unless the studio runs in team mode (`team_on`); then the
    account of the personal key in TRANSLATOR_KEY."""
    if not team_on(db):
        return LOCAL
    account = key_account(db, os.environ.get(KEY_VARIABLE))
    if account is None:
        raise UserError("ERR_CLI_NEEDS_KEY", variable=KEY_VARIABLE)
    return Asker(account, address="cli")


def cli_adapter(db, name: str, *, change: bool = False):
    """A command line's adapter, for the account of its key in team mode: one it may see (chat,
    serve, build pairs from), or with `change` one it may change (merge, export, push, evaluate)."""
    asker = cli_asker(db)
    return (changeable_adapter if change else visible_adapter)(db, asker, name)


def remember_mode(db, team: bool) -> None:
    """The app records the mode it started in, so command lines follow it."""
    if preferences.get(db, TEAM_PREFERENCE, "off") != ("on" if team else "off"):
        preferences.put(db, TEAM_PREFERENCE, "on" if team else "off")


def visible_adapters(db, asker: Asker) -> list:
    """The adapters this person may chat with and look at: their own and the shared ones (all of
    them for the owner and a single-user studio)."""
    return [adapter for adapter in adapter_rows.list_all(db) if asker.may_see_adapter(adapter)]


def visible_adapter(db, asker: Asker, name: str):
    """The adapter of that name if this person may see it; otherwise the refusal of a missing one."""
    if asker.account is None:
        return adapter_rows.require(db, name)
    adapter = adapter_rows.get(db, name)
    if adapter is None or not asker.may_see_adapter(adapter):
        raise UserError("ERR_NOT_FOUND_FOR_YOU", what=texts.Message("OBJECT_KINDS.adapter"), name=name)
    return adapter


def changeable_adapter(db, asker: Asker, name: str):
    """The adapter of that name if this person may change it (rename, delete, export, evaluate,
    share); a shared adapter of someone else's is refused as if it were missing."""
    if asker.account is None:
        return adapter_rows.require(db, name)
    adapter = adapter_rows.get(db, name)
    if adapter is None:
        raise UserError("ERR_NOT_FOUND_FOR_YOU", what=texts.Message("OBJECT_KINDS.adapter"), name=name)
    asker.may_change(adapter.owner_id, "adapter", name)
    return adapter


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.accounts`: the studio's accounts from the machine's shell (whoever may
    write the registry file may do this: TRANSLATOR_HOME's permissions are the boundary)."""
    import argparse

    from registry import connect

    parser = argparse.ArgumentParser(prog="python -m studio.accounts", description="Team mode's accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every account, its role and whether its password is set")
    add = commands.add_parser("add", help="a new account and its one-time setup code")
    add.add_argument("name")
    add.add_argument("--role", default="member", choices=ROLES)
    add.add_argument("--email", help="matched at sign-in through the identity provider")
    code = commands.add_parser("code", help="a new one-time setup code (to set or reset a password)")
    code.add_argument("name")
    args = parser.parse_args(argv)
    try:
        db = connect()
        if args.command == "list":
            for account in rows.list_all(db):
                password = "password set" if account.password_hash else "no password yet"
                print(f"{account.name}\t{account.role}\t{account.email or ''}\t{password}")
            return 0
        if args.command == "add":
            account, secret = create_account(db, args.name, args.role, email=args.email)
        else:
            account = rows.by_name(db, args.name)
            if account is None:
                raise UserError(
                    "ERR_NOT_FOUND_FOR_YOU", what=texts.Message("NAME_KINDS.account"), name=args.name
                )
            secret = issue_setup_code(db, account)
            rows.record_audit(db, "setup_code_issued", account=None, obj=account.name, address="cli")
        hours = SETUP_CODE_SECONDS // 3600
        print(texts.TEAM_ACCOUNT_CREATED.format(name=account.name, hours=hours), secret)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def audit(db, action: str, asker: Asker, obj: str = "") -> None:
    """Record a consequential act (delete, export, push, stop): in team mode only; a laptop keeps
    no trail of its one person."""
    if asker.account is not None:
        rows.record_audit(db, action, account=asker.account, obj=obj, address=asker.address)


if __name__ == "__main__":
    sys.exit(main())
