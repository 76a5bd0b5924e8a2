"""The store objects the kernel holds: cheap handles on a shared ``Backend``.

``open`` takes a reference on the database's backend (starting it on first use) and checks
the schema version; ``close`` gives the reference back. Calls on a store that is not open
open it first.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pyagent.plugin import Checkpoint, RunHeader, StoredRun

from .backend import Backend, acquire, release
from .errors import CheckpointConflictError


class SQLStore:
    """A ``pyagent.store.Store`` on a SQLAlchemy async engine; subclasses pick the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backend: Backend | None = None
        self._guard = threading.Lock()

    # -- what a database provides -----------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL as it may be shown: never with a password."""
        return self.url

    def _key(self) -> Hashable:
        raise NotImplementedError

    def _make_backend(self) -> Backend:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (sharing the process's connections to this database) and check the schema."""
        if self._backend is not None:
            return
        backend = await acquire(self._key(), self._make_backend)
        with self._guard:
            if self._backend is None:
                self._backend = backend
                return
        await release(backend)  # a concurrent open() of this store won

    async def close(self) -> None:
        """Give the connections back; the store may be opened again later."""
        with self._guard:
            backend, self._backend = self._backend, None
        if backend is not None:
            await release(backend)

    async def _ready(self) -> Backend:
        backend = self._backend
        if backend is None:
            await self.open()
            backend = self._backend
            assert backend is not None
        return backend

    async def __aenter__(self) -> SQLStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Store protocol -------------------------------------------------------------

    async def save_run(self, header: RunHeader) -> None:
        """Insert or replace the header of ``header.run_id``."""
        backend = await self._ready()
        await backend.run(backend.save_run, run_params(header))

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` unless its run id exists (``ON CONFLICT DO NOTHING``); True if inserted."""
        backend = await self._ready()
        return await backend.run(backend.create_run, run_params(header))

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = checkpoint_params(checkpoint)
        backend = await self._ready()
        try:
            await backend.run(backend.append, params)
        except IntegrityError:
            raise self._conflict(checkpoint) from None

    async def load(self, run_id: str) -> StoredRun | None:
        """The header and the checkpoints from the latest full one on, ordered by seq."""
        backend = await self._ready()
        return await backend.run(backend.load, run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        since: float | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[RunHeader]:
        """Headers matching every given filter, newest first."""
        backend = await self._ready()
        runs = backend.tables.runs
        query = select(runs)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        if status is not None:
            query = query.where(runs.c.status == status)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            query = query.limit(limit)
        return await backend.run(backend.list_runs, query)

    async def prune(self, run_id: str, keep: int) -> int:
        """Keep the last ``keep`` checkpoints and the full one they build on; return how many went."""
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number >= 1 (checkpoints to keep per run), got {keep!r}")
        backend = await self._ready()
        return await backend.run(backend.prune, run_id, keep)

    def _conflict(self, cp: Checkpoint) -> CheckpointConflictError:
        return CheckpointConflictError(
            f"checkpoint {cp.seq} of run {cp.run_id!r} is already stored in {self.display_url}: "
            "is another process resuming the same run? Resume a run from one process at a time"
        )


def run_params(header: RunHeader) -> dict[str, Any]:
    return {
        "run_id": header.run_id,
        "workflow": header.workflow,
        "status": header.status,
        "started_at": header.started_at,
        "finished_at": header.finished_at,
        "payload": header.payload,
    }


def checkpoint_params(cp: Checkpoint) -> dict[str, Any]:
    if cp.kind not in ("full", "delta"):
        raise ValueError(f"checkpoint kind must be 'full' or 'delta', got {cp.kind!r}")
    return {
        "run_id": cp.run_id,
        "seq": cp.seq,
        "kind": cp.kind,
        "payload": cp.payload,
        "created_at": cp.created_at,
    }
