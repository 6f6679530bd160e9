"""Roles as the registry keeps them: the built-ins plus each custom role, checked field by field
when saved, refused for deletion while an adapter or an unfinished job uses it."""

from core.errors import UserError
from core.names import check_name
from engine.formats import FORMATS
from engine.roles import BUILTIN_ROLES, METRICS, Decoding, Role, check_decoding
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from registry import roles as role_rows


def get_role(db, name: str) -> Role:
    if name in BUILTIN_ROLES:
        return BUILTIN_ROLES[name]
    row = role_rows.get(db, name) if db is not None else None
    if row is None:
        known = ", ".join(role.name for role in list_roles(db))
        raise UserError("ERR_UNKNOWN_ROLE", name=name, known=known)
    return _from_row(row)


def list_roles(db) -> list[Role]:
    custom = [_from_row(row) for row in role_rows.list_all(db)] if db is not None else []
    return [*BUILTIN_ROLES.values(), *custom]


def save_custom_role(db, role: Role) -> Role:
    """Create or update a custom role, after checking every field."""
    name = check_name(role.name, "role")
    if name.lower() in BUILTIN_ROLES:
        raise UserError("ERR_BUILTIN_ROLE_NAME", name=name)
    if role.prompt_format not in ("", *FORMATS):
        raise UserError("ERR_ROLE_FORMAT", value=role.prompt_format, choices=", ".join(FORMATS))
    if role.metric not in METRICS:
        raise UserError("ERR_ROLE_METRIC", value=role.metric, choices=", ".join(METRICS))
    check_decoding(role.decoding)
    role_rows.save(
        db,
        name=name,
        title=(role.title or name).strip(),
        system_prompt=role.system_prompt,
        instruction=role.instruction,
        decoding=role.decoding.as_dict(),
        uses_history=role.uses_history,
        prompt_format=role.prompt_format,
        metric=role.metric,
    )
    return get_role(db, name)


def role_users(db) -> dict[str, list[str]]:
    """Per role, what uses it: its adapters, then its unfinished jobs ("job 7")."""
    users: dict[str, list[str]] = {}
    for adapter in adapter_rows.list_all(db):
        users.setdefault(adapter.role, []).append(adapter.name)
    for job in job_rows.active(db):
        users.setdefault(job.role, []).append(f"job {job.id}")
    return users


def delete_custom_role(db, name: str) -> str:
    """Delete a custom role that no adapter and no unfinished job uses; returns its name."""
    if name in BUILTIN_ROLES:
        raise UserError("ERR_DELETE_BUILTIN_ROLE", name=name)
    get_role(db, name)  # unknown: says which roles exist
    users = role_users(db).get(name)
    if users:
        raise UserError("ERR_ROLE_IN_USE", name=name, users=", ".join(users))
    role_rows.delete(db, name)
    return name


def _from_row(row: dict) -> Role:
    return Role(
        name=row["name"],
        title=row["title"] or row["name"],
        system_prompt=row["system_prompt"] or "",
        instruction=row["instruction"] or "",
        decoding=Decoding().with_changes(**row["decoding"]),
        uses_history=row["uses_history"],
        prompt_format=row.get("prompt_format") or "",
        metric=row.get("metric") or "loss",
    )
