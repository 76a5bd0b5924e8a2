"""The SQL stores' errors: each names the database (never its password) and what to check.

They subclass the kernel's ``DriverLoadFailure`` so callers that handle "a store could not be
started" in general need not know about this plugin.
"""

from __future__ import annotations

from pyagent.plugin import CheckpointConflictError as _KernelCheckpointConflictError
from pyagent.plugin import DriverLoadFailure


class StoreURLError(DriverLoadFailure, ValueError):
    """A ``sqlite://`` or ``postgresql://`` URL that cannot name a database."""


class StoreUnavailableError(DriverLoadFailure, ConnectionError):
    """The database could not be opened or reached."""


class SchemaVersionError(DriverLoadFailure):
    """The database's schema was written by a newer (or unknown) version of pyagent-sql."""


# Defined by the kernel so every store raises the same type; re-exported here.
CheckpointConflictError = _KernelCheckpointConflictError
