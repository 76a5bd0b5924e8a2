"""What the SQLite and PostgreSQL stores share: statements, the private loop, open and close.

Every async engine call runs on the store's own loop thread (see ``_loop``). Statements are
built once per store so SQLAlchemy's compiled cache serves every later call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pyagent.store import Checkpoint, RunHeader, StoredRun

from ._loop import LoopThread, wait_future
from .errors import CheckpointConflictError, SchemaVersionError, StoreUnavailableError
from .schema import define_tables

log = logging.getLogger("pyagent.sql")
T = TypeVar("T")


class SQLStore:
    """A ``pyagent.store.Store`` on a SQLAlchemy async engine; subclasses pick the database."""

    #: Shown in messages ("SQLite", "PostgreSQL").
    kind = "SQL"

    def __init__(self, url: str) -> None:
        self.url = url
        self.tables = define_tables()
        self._guard = threading.Lock()
        self._loop: LoopThread | None = None
        self._opened: concurrent.futures.Future[None] | None = None
        # Set on the private loop by _open_on_loop.
        self._engine: AsyncEngine | None = None
        self._write_lock: asyncio.Lock | None = None
        self._build_statements()

    # -- what a database provides -----------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL as it may be shown: never with a password."""
        return self.url

    def _create_engine(self) -> AsyncEngine:
        raise NotImplementedError

    def _upsert_run_statement(self) -> Any:
        raise NotImplementedError

    async def _migrate(self, conn: AsyncConnection) -> None:
        raise NotImplementedError

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot open the {self.kind} store {self.display_url}: {exc}")

    async def _before_open(self) -> None:
        """Checks that need no connection (a missing directory, ...)."""

    def _reader(self) -> AsyncEngine:
        assert self._engine is not None
        return self._engine

    def _writer(self) -> AsyncEngine:
        """The engine view for one-statement writes."""
        assert self._engine is not None
        return self._engine

    # -- statements -------------------------------------------------------------------

    def _build_statements(self) -> None:
        runs, cps = self.tables.runs, self.tables.checkpoints
        self._upsert_run = self._upsert_run_statement()
        self._insert_checkpoint = cps.insert()
        self._select_header = select(runs).where(runs.c.run_id == bindparam("run_id"))
        first_full = (
            select(func.max(cps.c.seq))
            .where(cps.c.run_id == bindparam("run_id"), cps.c.kind == "full")
            .scalar_subquery()
        )
        first_any = select(func.min(cps.c.seq)).where(cps.c.run_id == bindparam("run_id")).scalar_subquery()
        self._select_from_full = (
            select(cps)
            .where(cps.c.run_id == bindparam("run_id"), cps.c.seq >= func.coalesce(first_full, first_any))
            .order_by(cps.c.seq)
        )
        self._select_kept = (
            select(cps.c.seq, cps.c.kind)
            .where(cps.c.run_id == bindparam("run_id"))
            .order_by(cps.c.seq.desc())
            .offset(bindparam("offset"))
            .limit(1)
        )
        self._select_full_before = select(func.max(cps.c.seq)).where(
            cps.c.run_id == bindparam("run_id"), cps.c.kind == "full", cps.c.seq < bindparam("before")
        )
        self._delete_before = delete(cps).where(
            cps.c.run_id == bindparam("run_id"), cps.c.seq < bindparam("before")
        )
        self._delete_before_except = delete(cps).where(
            cps.c.run_id == bindparam("run_id"),
            cps.c.seq < bindparam("before"),
            cps.c.seq != bindparam("spare"),
        )

    @staticmethod
    def _run_params(header: RunHeader) -> dict[str, Any]:
        return {
            "run_id": header.run_id,
            "workflow": header.workflow,
            "status": header.status,
            "started_at": header.started_at,
            "finished_at": header.finished_at,
            "payload": header.payload,
        }

    @staticmethod
    def _checkpoint_params(cp: Checkpoint) -> dict[str, Any]:
        if cp.kind not in ("full", "delta"):
            raise ValueError(f"checkpoint kind must be 'full' or 'delta', got {cp.kind!r}")
        return {
            "run_id": cp.run_id,
            "seq": cp.seq,
            "kind": cp.kind,
            "payload": cp.payload,
            "created_at": cp.created_at,
        }

    def _conflict(self, cp: Checkpoint) -> CheckpointConflictError:
        return CheckpointConflictError(
            f"checkpoint {cp.seq} of run {cp.run_id!r} is already stored in {self.display_url}: "
            "is another process resuming the same run? Resume a run from one process at a time"
        )

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Start the private loop, connect, and create or migrate the schema (idempotent)."""
        with self._guard:
            if self._opened is None:
                self._loop = LoopThread(f"pyagent-sql {self.display_url}")
                self._opened = self._loop.submit(self._open_on_loop)
            opened, loop = self._opened, self._loop
        try:
            await wait_future(opened)
        except BaseException:
            if opened.done() and not opened.cancelled() and opened.exception() is not None:
                with self._guard:
                    if self._opened is opened:
                        self._opened, self._loop = None, None
                        assert loop is not None
                        loop.stop()
            raise

    async def _open_on_loop(self) -> None:
        await self._before_open()
        self._engine = self._create_engine()
        self._write_lock = asyncio.Lock()
        try:
            async with self._engine.connect() as conn:
                await self._migrate(conn)
        except BaseException as exc:
            await self._engine.dispose()
            self._engine = None
            if isinstance(exc, (SchemaVersionError, StoreUnavailableError)) or not isinstance(exc, Exception):
                raise
            raise self._unavailable(exc) from exc

    async def _running_loop(self) -> LoopThread:
        """The private loop of an open store, opening it on first use."""
        opened, loop = self._opened, self._loop
        if opened is None or loop is None or not opened.done() or opened.exception() is not None:
            await self.open()
            loop = self._loop
        assert loop is not None
        return loop

    async def _on_loop(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = await self._running_loop()
        return await loop.run(fn, *args)

    async def close(self) -> None:
        """Dispose the engine and stop the private loop; the store may be opened again later."""
        with self._guard:
            opened, loop = self._opened, self._loop
            self._opened, self._loop = None, None
        if loop is None or opened is None:
            return
        try:
            if not opened.done():  # an open still in progress: let it finish first
                with contextlib.suppress(Exception):
                    await wait_future(opened)
            if not opened.cancelled() and opened.exception() is None:
                await loop.run(self._close_on_loop)
        finally:
            loop.stop()

    async def _close_on_loop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> SQLStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Store protocol -------------------------------------------------------------

    async def save_run(self, header: RunHeader) -> None:
        """Insert or replace the header of ``header.run_id``."""
        await self._on_loop(self._save_run_on_loop, self._run_params(header))

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = self._checkpoint_params(checkpoint)
        try:
            await self._on_loop(self._append_on_loop, params)
        except IntegrityError:
            raise self._conflict(checkpoint) from None

    async def load(self, run_id: str) -> StoredRun | None:
        """The header and the checkpoints from the latest full one on, ordered by seq."""
        return await self._on_loop(self._load_on_loop, run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        since: float | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[RunHeader]:
        """Headers matching every given filter, newest first."""
        runs = self.tables.runs
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
        return await self._on_loop(self._list_on_loop, query)

    async def prune(self, run_id: str, keep: int) -> int:
        """Keep the last ``keep`` checkpoints and the full one they build on; return how many went."""
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number >= 1 (checkpoints to keep per run), got {keep!r}")
        return await self._on_loop(self._prune_on_loop, run_id, keep)

    # -- on the private loop ------------------------------------------------------------

    async def _save_run_on_loop(self, params: dict[str, Any]) -> None:
        assert self._write_lock is not None
        async with self._write_lock, self._writer().begin() as conn:
            await conn.execute(self._upsert_run, params)

    async def _append_on_loop(self, params: dict[str, Any]) -> None:
        assert self._write_lock is not None
        async with self._write_lock, self._writer().begin() as conn:
            await conn.execute(self._insert_checkpoint, params)

    async def _load_on_loop(self, run_id: str) -> StoredRun | None:
        async with self._reader().connect() as conn:
            row = (await conn.execute(self._select_header, {"run_id": run_id})).first()
            if row is None:
                return None
            rows = (await conn.execute(self._select_from_full, {"run_id": run_id})).all()
        return StoredRun(_header(row), [_checkpoint(r) for r in rows])

    async def _list_on_loop(self, query: Any) -> list[RunHeader]:
        async with self._reader().connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_header(r) for r in rows]

    async def _prune_on_loop(self, run_id: str, keep: int) -> int:
        assert self._write_lock is not None and self._engine is not None
        async with self._write_lock, self._transaction_engine().begin() as conn:
            first = (await conn.execute(self._select_kept, {"run_id": run_id, "offset": keep - 1})).first()
            if first is None:
                return 0
            first_seq, first_kind = first
            spare = None
            if first_kind != "full":
                spare = (
                    await conn.execute(self._select_full_before, {"run_id": run_id, "before": first_seq})
                ).scalar()
            if spare is None:
                result = await conn.execute(self._delete_before, {"run_id": run_id, "before": first_seq})
            else:
                result = await conn.execute(
                    self._delete_before_except, {"run_id": run_id, "before": first_seq, "spare": spare}
                )
            return int(result.rowcount or 0)

    def _transaction_engine(self) -> AsyncEngine:
        """The engine view for multi-statement write transactions."""
        assert self._engine is not None
        return self._engine


def _header(row: Row[Any]) -> RunHeader:
    m = row._mapping
    return RunHeader(
        run_id=m["run_id"],
        workflow=m["workflow"],
        status=m["status"],
        started_at=float(m["started_at"]),
        finished_at=None if m["finished_at"] is None else float(m["finished_at"]),
        payload=bytes(m["payload"]),
    )


def _checkpoint(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        run_id=m["run_id"],
        seq=int(m["seq"]),
        kind=m["kind"],
        payload=bytes(m["payload"]),
        created_at=float(m["created_at"]),
    )
