"""pyagent stores on SQLAlchemy 2 async: ``sqlite://`` (WAL, embedded) and ``postgresql://`` (asyncpg).

The kernel finds these factories through the ``pyagent.stores`` entry points, by URL scheme,
and calls ``factory(url)``. SQLAlchemy and the drivers are imported only then, so discovering
plugins stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    CheckpointConflictError,
    SchemaVersionError,
    StoreUnavailableError,
    StoreURLError,
)

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

__all__ = [
    "CheckpointConflictError",
    "SchemaVersionError",
    "StoreURLError",
    "StoreUnavailableError",
    "postgresql_store",
    "sqlite_store",
]


def sqlite_store(url: str) -> SQLiteStore:
    """A store in the SQLite file named by ``url`` (``sqlite://checkpoints.db``, ``sqlite:////abs.db``)."""
    from .sqlite import SQLiteStore

    return SQLiteStore(url)


def postgresql_store(url: str) -> PostgresStore:
    """A store in the PostgreSQL database named by ``url`` (``postgresql://user@host:5432/db``)."""
    from .postgres import PostgresStore

    return PostgresStore(url)
