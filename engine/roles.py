"""Roles: a system prompt, an instruction, a decoding preset, whether history matters, the prompt
format to train and chat with (empty: the base model's own), and the metric that scores it.

Built-in roles mirror the two tutorials; users add their own, stored in the registry.
"""

from dataclasses import asdict, dataclass, field, replace

from engine import texts
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

    def describe(self) -> str:
        how = f"T={self.temperature:g} top_p={self.top_p:g}" if self.do_sample else texts.GREEDY
        return texts.DECODING_SUMMARY.format(
            how=how, rep=f"{self.repetition_penalty:g}", max=self.max_new_tokens
        )

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
    prompt_format: str = ""  # yuan, chat_template or plain; empty: the base model's own
    metric: str = "loss"  # see METRICS

    @property
    def label(self) -> str:
        """The name people see: a built-in role's speaks the chosen language."""
        return texts.ROLE_TITLES[self.name] if self.builtin else self.title


TRANSLATOR = Role(
    name="translator",
    title="Translator (EN→ZH)",
    system_prompt="你是一名专业的医学翻译。请把用户给出的英文翻译成简体中文，只输出译文。",
    decoding=Decoding(do_sample=False, max_new_tokens=256),
    uses_history=False,  # every message is a new text to translate
    builtin=True,
    metric="translation",
)
PERSONA = Role(
    name="persona",
    title="Zhen Huan persona",
    system_prompt="现在你要扮演皇帝身边的女人--甄嬛",
    decoding=Decoding(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.1, max_new_tokens=256),
    builtin=True,
)
ASSISTANT = Role(
    name="assistant",
    title="Assistant",
    decoding=Decoding(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.1),
    builtin=True,
)
BUILTIN_ROLES = {role.name: role for role in (TRANSLATOR, PERSONA, ASSISTANT)}
# How evaluation scores a role: sacrebleu BLEU (zh) and chrF of greedy outputs, or the mean loss and
# perplexity of the references.
METRICS = ("translation", "loss")


def get_role(db, name: str) -> Role:
    if name in BUILTIN_ROLES:
        return BUILTIN_ROLES[name]
    row = role_rows.get(db, name) if db is not None else None
    if row is None:
        known = ", ".join(role.name for role in list_roles(db))
        raise UserError(texts.ERR_UNKNOWN_ROLE.format(name=name, known=known))
    return _from_row(row)


def list_roles(db) -> list[Role]:
    custom = [_from_row(row) for row in role_rows.list_all(db)] if db is not None else []
    return [*BUILTIN_ROLES.values(), *custom]


def save_custom_role(db, role: Role) -> Role:
    """Create or update a custom role, after checking every field."""
    name = check_name(role.name, "role")
    if name.lower() in BUILTIN_ROLES:
        raise UserError(texts.ERR_BUILTIN_ROLE_NAME.format(name=name))
    from engine.formats import FORMATS  # formats builds on roles

    if role.prompt_format not in ("", *FORMATS):
        raise UserError(texts.ERR_ROLE_FORMAT.format(value=role.prompt_format, choices=", ".join(FORMATS)))
    if role.metric not in METRICS:
        raise UserError(texts.ERR_ROLE_METRIC.format(value=role.metric, choices=", ".join(METRICS)))
    _check_decoding(role.decoding)
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
    from registry import adapters as adapter_rows
    from registry import jobs as job_rows

    users: dict[str, list[str]] = {}
    for adapter in adapter_rows.list_all(db):
        users.setdefault(adapter["role"], []).append(adapter["name"])
    for job in job_rows.active(db):
        users.setdefault(job["role"], []).append(f"job {job['id']}")
    return users


def delete_custom_role(db, name: str) -> str:
    """Delete a custom role that no adapter and no unfinished job uses; returns its name."""
    if name in BUILTIN_ROLES:
        raise UserError(texts.ERR_DELETE_BUILTIN_ROLE.format(name=name))
    get_role(db, name)  # unknown: says which roles exist
    users = role_users(db).get(name)
    if users:
        raise UserError(texts.ERR_ROLE_IN_USE.format(name=name, users=", ".join(users)))
    role_rows.delete(db, name)
    return name


def _check_decoding(decoding: Decoding) -> None:
    for setting, ok in (
        ("temperature", 0 < decoding.temperature <= 5),
        ("top_p", 0 < decoding.top_p <= 1),
        ("repetition_penalty", 1 <= decoding.repetition_penalty <= 5),
        ("max_new_tokens", 1 <= decoding.max_new_tokens <= 8192),
    ):
        if not ok:
            raise UserError(texts.ERR_ROLE_DECODING.format(problem=texts.DECODING_LIMITS[setting]))


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
