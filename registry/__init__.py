"""The SQLite registry of adapters, training jobs, metrics, roles and conversations."""

from registry.db import connect

__all__ = ["connect"]
