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
        raise UserError(texts.ERR_NAME_EMPTY.format(what=_kind(what)))
    if not _SAFE_NAME.match(name) or ".." in name:
        raise UserError(texts.ERR_NAME_UNSAFE.format(what=_kind(what), name=name))
    if name.lower() in RESERVED:
        raise UserError(texts.ERR_NAME_RESERVED.format(what=_kind(what), name=name))
    return name


def _kind(what: str) -> str:
    return texts.NAME_KINDS.get(what, what)
