"""One database's connections, shared by every store object on that database in the process.

The kernel creates, opens and closes a store per run (and per history query or resume). A
fresh SQLAlchemy engine, event-loop thread and schema check cost 15-25 ms, which would be
paid again for every run, so they live here instead: a ``Backend`` per database (per
resolved path or server, schema and connect options), reference-counted by the open stores.
When the last store on it closes, the backend tidies up (SQLite folds its write-ahead log
back into the database file) and waits idle for the next run; the least recently used idle
ones beyond ``MAX_IDLE`` are shut down, and ``dispose_all`` (also run at interpreter exit)
shuts down the rest.

Every async engine call runs on the backend's own loop thread (see ``_loop``). Statements
are built once per backend so SQLAlchemy's compiled cache serves every later call.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pyagent.plugin import Checkpoint, RunHeader, StoredRun

from . import schema
from ._loop import LoopThread, wait_future
from .errors import SchemaVersionError, StoreUnavailableError
from .schema import define_tables

log = logging.getLogger("pyagent.sql")
T = TypeVar("T")

#: Idle backends (no open store) kept ready for the next run; older ones are shut down.
MAX_IDLE = 4


class Backend:
    """Engine, loop thread and statements for one database; subclasses pick the database."""

    kind = "SQL"

    def __init__(self, key: Hashable, display: str) -> None:
        self.key = key
        self.display = display
        self.pid = os.getpid()
        self.refs = 0
        self.tables = define_tables()
        self.loop = LoopThread(f"pyagent-sql {display}")
        self.ready: concurrent.futures.Future[None] | None = None
        self.ready_checked = False  # the first store gets the schema _start just checked
        # Set on the private loop by _start.
        self.engine: AsyncEngine | None = None
        self.write_lock: asyncio.Lock | None = None
        self._build_statements()

    # -- what a database provides -----------------------------------------------------

    def create_engine(self) -> AsyncEngine:
        raise NotImplementedError

    def upsert_run_statement(self) -> Any:
        raise NotImplementedError

    def insert_run_if_absent_statement(self) -> Any:
        """``INSERT`` of a run header that does nothing when the run id exists."""
        raise NotImplementedError

    async def migrate(self, conn: AsyncConnection) -> None:
        """Create or upgrade the schema under a lock that other processes respect."""
        raise NotImplementedError

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot open the {self.kind} store {self.display}: {exc}")

    async def before_start(self) -> None:
        """Checks that need no connection (a missing directory, ...)."""

    async def schema_version(self) -> int:
        """The version the database records now (checked at every open)."""
        async with self.reader().connect() as conn:
            value = (await conn.execute(select(func.max(self.tables.versions.c.version)))).scalar()
        return int(value or 0)

    def reader(self) -> AsyncEngine:
        assert self.engine is not None
        return self.engine

    def writer(self) -> AsyncEngine:
        """The engine view for one-statement writes."""
        assert self.engine is not None
        return self.engine

    def transaction_engine(self) -> AsyncEngine:
        """The engine view for multi-statement write transactions."""
        assert self.engine is not None
        return self.engine

    async def on_idle(self) -> None:
        """The last open store closed (on the backend's loop)."""

    async def dispose(self) -> None:
        """Release every connection (on the backend's loop)."""
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """Whether starting failed (a later store makes a new backend)."""
        ready = self.ready
        return ready is not None and ready.done() and (ready.cancelled() or ready.exception() is not None)

    def start(self) -> concurrent.futures.Future[None]:
        self.ready = self.loop.submit(self._start)
        return self.ready

    async def _start(self) -> None:
        await self.before_start()
        self.engine = self.create_engine()
        self.write_lock = asyncio.Lock()
        try:
            async with self.engine.connect() as conn:
                await self.migrate(conn)
        except BaseException as exc:
            await self.dispose()
            if isinstance(exc, (SchemaVersionError, StoreUnavailableError)) or not isinstance(exc, Exception):
                raise
            raise self.unavailable(exc) from exc

    async def check_schema(self) -> None:
        """Refuse a database another process has since upgraded; migrate one left behind."""
        found = await self.run(self.schema_version)
        if found != schema.LATEST:  # read at call time: migrations may be added
            await self.run(self._migrate_again)

    async def _migrate_again(self) -> None:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            await self.migrate(conn)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the backend's loop and await it from any loop or backend."""
        return await self.loop.run(fn, *args)

    def shutdown(self, timeout: float | None = None) -> None:
        """Dispose the engine and stop the loop; waits up to ``timeout`` (None: do not wait)."""
        if self.loop.loop.is_closed():
            return
        try:
            done = self.loop.submit(self.dispose)
        except RuntimeError:
            return
        done.add_done_callback(lambda _: self.loop.stop())
        if timeout is not None:
            try:
                done.result(timeout)
            except Exception as exc:
                log.debug("shutting down %s: %s", self.display, exc)

    # -- statements -------------------------------------------------------------------

    def _build_statements(self) -> None:
        runs, cps = self.tables.runs, self.tables.checkpoints
        self.upsert_run = self.upsert_run_statement()
        self.insert_run_if_absent = self.insert_run_if_absent_statement()
        self.insert_checkpoint = cps.insert()
        self.select_header = select(runs).where(runs.c.run_id == bindparam("run_id"))
        latest_full = (
            select(func.max(cps.c.seq))
            .where(cps.c.run_id == bindparam("run_id"), cps.c.kind == "full")
            .scalar_subquery()
        )
        first = select(func.min(cps.c.seq)).where(cps.c.run_id == bindparam("run_id")).scalar_subquery()
        self.select_from_full = (
            select(cps)
            .where(cps.c.run_id == bindparam("run_id"), cps.c.seq >= func.coalesce(latest_full, first))
            .order_by(cps.c.seq)
        )
        self.select_kept = (
            select(cps.c.seq, cps.c.kind)
            .where(cps.c.run_id == bindparam("run_id"))
            .order_by(cps.c.seq.desc())
            .offset(bindparam("offset"))
            .limit(1)
        )
        self.select_full_before = select(func.max(cps.c.seq)).where(
            cps.c.run_id == bindparam("run_id"), cps.c.kind == "full", cps.c.seq < bindparam("before")
        )
        self.delete_before = delete(cps).where(cps.c.run_id == bindparam("run_id"), cps.c.seq < bindparam("before"))

    # -- operations, on the backend's loop ----------------------------------------------

    async def save_run(self, params: dict[str, Any]) -> None:
        assert self.write_lock is not None
        async with self.write_lock, self.writer().begin() as conn:
            await conn.execute(self.upsert_run, params)

    async def create_run(self, params: dict[str, Any]) -> bool:
        assert self.write_lock is not None
        async with self.write_lock, self.writer().begin() as conn:
            result = await conn.execute(self.insert_run_if_absent, params)
        return bool(result.rowcount == 1)

    async def append(self, params: dict[str, Any]) -> None:
        assert self.write_lock is not None
        async with self.write_lock, self.writer().begin() as conn:
            await conn.execute(self.insert_checkpoint, params)

    async def load(self, run_id: str) -> StoredRun | None:
        async with self.reader().connect() as conn:
            row = (await conn.execute(self.select_header, {"run_id": run_id})).first()
            if row is None:
                return None
            rows = (await conn.execute(self.select_from_full, {"run_id": run_id})).all()
        return StoredRun(to_header(row), [to_checkpoint(r) for r in rows])

    async def list_runs(self, query: Any) -> list[RunHeader]:
        async with self.reader().connect() as conn:
            rows = (await conn.execute(query)).all()
        return [to_header(r) for r in rows]

    async def prune(self, run_id: str, keep: int) -> int:
        assert self.write_lock is not None
        async with self.write_lock, self.transaction_engine().begin() as conn:
            first = (await conn.execute(self.select_kept, {"run_id": run_id, "offset": keep - 1})).first()
            if first is None:
                return 0
            first_seq, first_kind = first
            # A delta builds on every checkpoint back to its full one: delete only what lies
            # before the full checkpoint the oldest kept one builds on.
            base = first_seq
            if first_kind != "full":
                base = (
                    await conn.execute(self.select_full_before, {"run_id": run_id, "before": first_seq})
                ).scalar()
                if base is None:
                    return 0
            result = await conn.execute(self.delete_before, {"run_id": run_id, "before": base})
            return int(result.rowcount or 0)


def to_header(row: Row[Any]) -> RunHeader:
    m = row._mapping
    return RunHeader(
        run_id=m["run_id"],
        workflow=m["workflow"],
        status=m["status"],
        started_at=float(m["started_at"]),
        finished_at=None if m["finished_at"] is None else float(m["finished_at"]),
        payload=bytes(m["payload"]),
    )


def to_checkpoint(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        run_id=m["run_id"],
        seq=int(m["seq"]),
        kind=m["kind"],
        payload=bytes(m["payload"]),
        created_at=float(m["created_at"]),
    )


# -- the process-wide registry ---------------------------------------------------------------

_LOCK = threading.Lock()
_BACKENDS: dict[Hashable, Backend] = {}
_IDLE: OrderedDict[Hashable, Backend] = OrderedDict()


async def acquire(key: Hashable, make: Callable[[], Backend]) -> Backend:
    """The started backend for ``key`` (made and started on first use), with one more reference."""
    with _LOCK:
        backend = _BACKENDS.get(key)
        if backend is None or backend.pid != os.getpid() or backend.failed:
            backend = make()
            backend.key = key  # the registry's key, whatever the backend was made with
            _BACKENDS[key] = backend
            backend.start()
        backend.refs += 1
        _IDLE.pop(key, None)
    assert backend.ready is not None
    try:
        await wait_future(backend.ready)
        if backend.ready_checked:
            await backend.check_schema()
        backend.ready_checked = True
    except BaseException:
        await release(backend, tidy=False)
        raise
    return backend


async def release(backend: Backend, *, tidy: bool = True) -> None:
    """Drop one reference; a backend nobody uses is tidied and parked, or shut down if it failed."""
    failed = backend.failed
    with _LOCK:
        backend.refs -= 1
        idle = backend.refs == 0
        if idle and failed and _BACKENDS.get(backend.key) is backend:
            del _BACKENDS[backend.key]
    if not idle:
        return
    if failed:
        backend.shutdown()
        return
    if tidy:
        try:
            await backend.run(backend.on_idle)
        except Exception as exc:  # tidying is an optimisation; the data is already committed
            log.debug("tidying %s after its last store closed: %s", backend.display, exc)
    evicted: list[Backend] = []
    with _LOCK:
        if backend.refs == 0 and _BACKENDS.get(backend.key) is backend:
            _IDLE[backend.key] = backend
            _IDLE.move_to_end(backend.key)
            while len(_IDLE) > MAX_IDLE:
                key, old = _IDLE.popitem(last=False)
                del _BACKENDS[key]
                evicted.append(old)
    for old in evicted:
        old.shutdown()


def dispose_all(timeout: float = 5.0) -> None:
    """Shut down every backend of this process (their stores reconnect on next use)."""
    with _LOCK:
        backends = [b for b in _BACKENDS.values() if b.pid == os.getpid()]
        _BACKENDS.clear()
        _IDLE.clear()
    for backend in backends:
        backend.shutdown(timeout)


atexit.register(dispose_all)
