"""Names that become folder names or keys: checked once, here, before anything is created."""

import re

from core import texts
from core.errors import UserError

# Letters of any script (adapters may have Chinese names), digits, dot, dash, underscore.
_SAFE_NAME = re.compile(r"^[^\W_][\w.\-]{0,63}$")
RESERVED = {"__base__", "base", "con", "nul", "prn", "aux"}


def check_name(name: str, what: str = "adapter") -> str:
    """Return the name stripped, or raise UserError explaining the rule."""
    name = (name or "").strip()
    if not name:
        raise UserError("ERR_NAME_EMPTY", what=_kind(what))
    if not _SAFE_NAME.match(name) or ".." in name:
        raise UserError("ERR_NAME_UNSAFE", what=_kind(what), name=name)
    if name.lower() in RESERVED:
        raise UserError("ERR_NAME_RESERVED", what=_kind(what), name=name)
    return name


def _kind(what: str) -> "texts.Message | str":
    return texts.Message(f"NAME_KINDS.{what}") if what in texts.entry("NAME_KINDS") else what
