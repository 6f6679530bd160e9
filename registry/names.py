"""Names that become folder names or keys: checked once, here, before anything is created."""

import re

from registry.errors import UserError

# Letters of any script (adapters may have Chinese names), digits, dot, dash, underscore.
_SAFE_NAME = re.compile(r"^[^\W_][\w.\-]{0,63}$")
RESERVED = {"__base__", "base", "con", "nul", "prn", "aux"}


def check_name(name: str, what: str = "adapter") -> str:
    """Return the name stripped, or raise UserError explaining the rule."""
    name = (name or "").strip()
    if not name:
        raise UserError(f"The {what} name is empty: give it a short name such as 'med-zh-1'.")
    if not _SAFE_NAME.match(name) or ".." in name:
        raise UserError(
            f"The {what} name {name!r} is not allowed: use 1-64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit (no spaces or slashes)."
        )
    if name.lower() in RESERVED:
        raise UserError(f"The {what} name {name!r} is reserved: pick another one.")
    return name
