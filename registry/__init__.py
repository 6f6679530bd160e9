"""The SQLite registry of adapters, training jobs, metrics, roles and conversations."""

from registry.db import connect
from registry.errors import UserError

__all__ = ["connect", "UserError"]
