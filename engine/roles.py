"""Roles: a system prompt, an instruction, a decoding preset and whether history matters.

Built-in roles mirror the two tutorials; users add their own, stored in the registry.
"""

from dataclasses import asdict, dataclass, field, replace

from registry import roles as role_rows
from registry.errors import UserError
from registry.names import check_name


@dataclass(frozen=True)
class Decoding:
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256

    def as_dict(self) -> dict:
        return asdict(self)

    def with_changes(self, **changes) -> "Decoding":
        known = {k: v for k, v in changes.items() if k in self.__dataclass_fields__ and v is not None}
        return replace(self, **known)


@dataclass(frozen=True)
class Role:
    name: str
    title: str
    system_prompt: str = ""
    # Put before the user's text when a training example has no instruction of its own.
    instruction: str = ""
    decoding: Decoding = field(default_factory=Decoding)
    uses_history: bool = True
    builtin: bool = False


TRANSLATOR = Role(
    name="translator",
    title="翻译 translator",
    system_prompt="你是一名专业的医学翻译。请把用户给出的英文翻译成简体中文，只输出译文。",
    decoding=Decoding(do_sample=False, max_new_tokens=256),
    uses_history=False,  # every message is a new text to translate
    builtin=True,
)
PERSONA = Role(
    name="persona",
    title="甄嬛 Zhen Huan persona",
    system_prompt="现在你要扮演皇帝身边的女人--甄嬛",
    decoding=Decoding(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.1, max_new_tokens=256),
    builtin=True,
)
ASSISTANT = Role(
    name="assistant",
    title="通用助手 assistant",
    decoding=Decoding(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.1),
    builtin=True,
)
BUILTIN_ROLES = {role.name: role for role in (TRANSLATOR, PERSONA, ASSISTANT)}


def get_role(db, name: str) -> Role:
    if name in BUILTIN_ROLES:
        return BUILTIN_ROLES[name]
    row = role_rows.get(db, name) if db is not None else None
    if row is None:
        known = ", ".join(role.name for role in list_roles(db))
        raise UserError(f"Unknown role {name!r}: known roles are {known}.")
    return _from_row(row)


def list_roles(db) -> list[Role]:
    custom = [_from_row(row) for row in role_rows.list_all(db)] if db is not None else []
    return [*BUILTIN_ROLES.values(), *custom]


def save_custom_role(db, role: Role) -> Role:
    name = check_name(role.name, "role")
    if name in BUILTIN_ROLES:
        raise UserError(f"{name!r} is a built-in role: give your role another name.")
    role_rows.save(
        db,
        name=name,
        title=role.title or name,
        system_prompt=role.system_prompt,
        instruction=role.instruction,
        decoding=role.decoding.as_dict(),
        uses_history=role.uses_history,
    )
    return get_role(db, name)


def _from_row(row: dict) -> Role:
    return Role(
        name=row["name"],
        title=row["title"] or row["name"],
        system_prompt=row["system_prompt"] or "",
        instruction=row["instruction"] or "",
        decoding=Decoding().with_changes(**row["decoding"]),
        uses_history=row["uses_history"],
    )
