"""The SQL stores' errors: each names the database (never its password) and what to check.

They subclass the kernel's error types (``DriverLoadFailure`` for a store that cannot be
started or reached, ``StoreError`` for a failed read or write) so callers need not know about
this plugin. No message carries the values of a statement's parameters: task outputs must
never leak into ``result.error`` or logs, so driver messages are cut to what names the problem.
"""

from __future__ import annotations

import re

from pyagent.plugin import CheckpointConflictError as _KernelCheckpointConflictError
from pyagent.plugin import DriverLoadFailure, StoreError


class StoreURLError(DriverLoadFailure, ValueError):
    """A ``sqlite://`` or ``postgresql://`` URL that cannot name a database."""


class StoreUnavailableError(DriverLoadFailure, StoreError, ConnectionError):
    """The database could not be opened, reached or written to (read-only, disk full, server down)."""


class SchemaVersionError(DriverLoadFailure):
    """The database's schema was written by a newer (or unknown) version of pyagent-sql."""


# Defined by the kernel so every store raises the same type; re-exported here.
CheckpointConflictError = _KernelCheckpointConflictError

# asyncpg puts the offending value into some messages ("invalid input for query argument $2:
# b'...'"): everything after the argument number goes.
_ARGUMENT_VALUE = re.compile(r"(query argument \$\d+)\s*:.*", re.DOTALL)
_MAX_DETAIL = 240


def describe(exc: BaseException) -> str:
    """``Type: message`` of a driver error, without parameter values, on one line."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = _ARGUMENT_VALUE.sub(r"\1 (value withheld)", lines[0] if lines else "")
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__
