"""The SQLite store: WAL mode, aiosqlite for reads and DDL, inline commits for small writes.

Why writes are inline: a checkpoint commit into a WAL database with ``synchronous=NORMAL``
takes about 20-30 µs (no fsync; durable against a killed process, which is what checkpoints
are for). Going through aiosqlite costs 140-320 µs per commit, almost all of it handing work
to aiosqlite's thread and back, which alone would blow the per-task checkpoint budget. So
``save_run`` and ``append_checkpoint`` commit on the caller's thread: one statement, compiled
by SQLAlchemy once per backend, on one driver connection in autocommit mode that never waits
for a lock (``busy_timeout=0``; about 15 µs a commit). If another process holds the
write lock, the write goes to the async engine instead, which waits (``busy_timeout``) on the
backend's own loop without blocking the caller's event loop; while such writes are queued,
later ones queue behind them so they land in order. WAL checkpoints (copying the log back
into the database, which does fsync) run on the backend's loop too, never on the caller's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Hashable
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from pyagent.plugin import Checkpoint, RunHeader

from . import schema
from .backend import Backend
from .base import SQLStore, checkpoint_params, run_params
from .errors import StoreUnavailableError
from .schema import VERSIONS, migrate
from .urls import parse_sqlite

log = logging.getLogger("pyagent.sql")

#: How long a write on the backend's loop waits for another process's write lock.
BUSY_TIMEOUT_MS = 10_000
#: Inline commits between two background WAL checkpoints: small enough that the final
#: fold when a run ends has little left to copy.
WAL_CHECKPOINT_EVERY = 64
#: The WAL file is truncated back to this size after a checkpoint.
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _pragmas(dbapi_conn: Any, busy_timeout_ms: int, autocheckpoint: bool) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    finally:
        cursor.close()


def _explicit_transactions(engine: Engine, *, busy_timeout_ms: int, autocheckpoint: bool) -> None:
    """Let SQLAlchemy, not the driver, begin transactions; writers take the lock up front.

    The drivers' implicit BEGIN is deferred: a transaction that reads and then writes (a
    migration) could fail on a concurrent writer instead of waiting. ``BEGIN IMMEDIATE``
    takes the write lock (or waits for it) before the first statement.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        _pragmas(dbapi_conn, busy_timeout_ms, autocheckpoint)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('pyagent_begin', 'DEFERRED')}")


def _is_busy(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "database is locked" in str(orig) or "database table is locked" in str(orig)


class SQLiteBackend(Backend):
    """One SQLite file: the async engine on the backend loop, plus the inline write connection."""

    kind = "SQLite"

    def __init__(self, path: str, url: str) -> None:
        self.path = path
        self.url = url
        super().__init__(path, url)
        self._writer_engine: AsyncEngine | None = None
        self._conn: sqlite3.Connection | None = None  # the inline connection
        self._sync_lock = threading.Lock()
        self._queued = 0  # writes waiting on the backend's loop; guarded by _queue_lock
        self._queue_lock = threading.Lock()
        self._since_wal_checkpoint = 0
        self._maintenance: sqlite3.Connection | None = None  # WAL checkpoints, on the loop only
        self.inline_upsert_run = _Inline(self.upsert_run)
        self.inline_insert_checkpoint = _Inline(self.insert_checkpoint)
        self.inline_create_run = _Inline(self.insert_run_if_absent)

    # -- engine -------------------------------------------------------------------------

    def create_engine(self) -> AsyncEngine:
        # NullPool: aiosqlite runs a (non-daemon) thread per connection; pooled ones would
        # keep the interpreter from exiting. The hot path does not use this engine.
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool)
        _explicit_transactions(engine.sync_engine, busy_timeout_ms=BUSY_TIMEOUT_MS, autocheckpoint=True)
        self._writer_engine = engine.execution_options(pyagent_begin="IMMEDIATE")
        return engine

    def writer(self) -> AsyncEngine:
        assert self._writer_engine is not None
        return self._writer_engine

    def transaction_engine(self) -> AsyncEngine:
        return self.writer()

    def upsert_run_statement(self) -> Any:
        runs = self.tables.runs
        stmt = sqlite_insert(runs)
        return stmt.on_conflict_do_update(
            index_elements=[runs.c.run_id],
            set_={c.name: stmt.excluded[c.name] for c in runs.c if c.name != "run_id"},
        )

    def insert_run_if_absent_statement(self) -> Any:
        runs = self.tables.runs
        return sqlite_insert(runs).on_conflict_do_nothing(index_elements=[runs.c.run_id])

    async def before_start(self) -> None:
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise StoreUnavailableError(
                f"cannot open the SQLite store {self.url}: the directory {folder} does not exist "
                f"(the database file would be {self.path}); create the directory or fix the "
                "path in the URL (sqlite://name.db is relative to the working directory, "
                "sqlite:////abs/name.db is absolute)"
            )

    async def migrate(self, conn: AsyncConnection) -> None:
        await conn.execution_options(pyagent_begin="IMMEDIATE")
        async with conn.begin():
            await conn.run_sync(migrate, self.tables.versions, where=f"{self.path} ({self.url})")

    async def check_schema(self) -> None:
        # Read inline (about 20 µs) rather than through aiosqlite at every run's open.
        try:
            with self._sync_lock:
                found = self._raw("SELECT max(version) FROM " + VERSIONS)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                await super().check_schema()  # busy or odd: the careful path
                return
            found = 0
        if found != schema.LATEST:  # read at call time: migrations may be added
            await self.run(self._migrate_again)

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig)
        if "not a database" in text:
            hint = "the file exists but is not an SQLite database: point the URL at another file"
        elif "unable to open" in text or "readonly" in text or isinstance(orig, PermissionError):
            hint = f"check that {os.path.dirname(self.path)} is writable by this process"
        elif _is_busy(orig):
            hint = (
                f"another process held the write lock for more than {BUSY_TIMEOUT_MS // 1000} s; "
                "check for a stuck process using the same file"
            )
        else:
            hint = "check the path and that the file is an SQLite database"
        return StoreUnavailableError(
            f"cannot open the SQLite store {self.url} (file {self.path}): "
            f"{type(orig).__name__}: {text}; {hint}"
        )

    # -- the inline write path ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The inline connection (callers hold ``_sync_lock``)."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _pragmas(conn, busy_timeout_ms=0, autocheckpoint=False)
            self._conn = conn
        return self._conn

    async def write(self, inline: _Inline, params: dict[str, Any], on_loop: Any) -> None:
        """Commit inline when the write lock is free, else queue the write on the backend's loop."""
        if self._queued == 0 and self._sync_lock.acquire(blocking=False):
            try:
                if self._queued == 0 and self._try_inline(inline, params):
                    return
            finally:
                self._sync_lock.release()
        with self._queue_lock:
            self._queued += 1
        try:
            await self.run(on_loop, params)
        finally:
            with self._queue_lock:
                self._queued -= 1

    async def insert_if_absent(self, params: dict[str, Any]) -> bool:
        """``create_run``: inline when the write lock is free (the row count says whether the
        header went in), else queued on the backend's loop like any other write."""
        if self._queued == 0 and self._sync_lock.acquire(blocking=False):
            try:
                if self._queued == 0:
                    try:
                        cursor = self._connection().execute(self.inline_create_run.sql,
                                                            self.inline_create_run.args(params))
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise
                    else:
                        self._since_wal_checkpoint += 1
                        return bool(cursor.rowcount == 1)
            finally:
                self._sync_lock.release()
        with self._queue_lock:
            self._queued += 1
        try:
            return await self.run(self.create_run, params)
        finally:
            with self._queue_lock:
                self._queued -= 1

    def _try_inline(self, inline: _Inline, params: dict[str, Any]) -> bool:
        """Commit on this thread; False when another connection holds the write lock.

        In autocommit mode one statement is one transaction: nothing to begin or commit.
        """
        try:
            self._connection().execute(inline.sql, inline.args(params))
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return False
            raise
        self._since_wal_checkpoint += 1
        if self._since_wal_checkpoint >= WAL_CHECKPOINT_EVERY:
            self._since_wal_checkpoint = 0
            with contextlib.suppress(RuntimeError):  # RuntimeError: shutting down
                self.loop.submit(self._wal_checkpoint, "PASSIVE").add_done_callback(_log_failure)
        return True

    def _raw(self, sql: str) -> Any:
        """One statement on the inline connection (callers hold ``_sync_lock``); the first
        column of the first row."""
        row = self._connection().execute(sql).fetchone()
        return None if row is None else row[0]

    async def _wal_checkpoint(self, mode: str) -> None:
        # On the backend's loop with a connection of its own: writers are never held up by a
        # lock of ours, and the copying and fsync block no caller's event loop.
        if self._maintenance is None:
            self._maintenance = sqlite3.connect(self.path, isolation_level=None)
            _pragmas(self._maintenance, busy_timeout_ms=BUSY_TIMEOUT_MS, autocheckpoint=False)
        self._maintenance.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    async def on_idle(self) -> None:
        """Fold the write-ahead log back into the database file once no run is writing."""
        await self._wal_checkpoint("TRUNCATE")

    async def dispose(self) -> None:
        with self._sync_lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
        if self._maintenance is not None:
            self._maintenance.close()
            self._maintenance = None
        await super().dispose()
        self._writer_engine = None


class _Inline:
    """A Core statement compiled once for the driver: SQL text plus parameter order."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=sqlite_dialect())
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup or ())

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.order)


class SQLiteStore(SQLStore):
    """A store in one SQLite file (``sqlite://checkpoints.db``, ``sqlite:////abs/path.db``)."""

    def __init__(self, url: str) -> None:
        self.path = parse_sqlite(url).path
        super().__init__(url)

    def _key(self) -> Hashable:
        return ("sqlite", self.path)

    def _make_backend(self) -> Backend:
        return SQLiteBackend(self.path, self.url)

    async def save_run(self, header: RunHeader) -> None:
        """Insert or replace the header of ``header.run_id``."""
        backend = await self._ready()
        assert isinstance(backend, SQLiteBackend)
        await backend.write(backend.inline_upsert_run, run_params(header), backend.save_run)

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` unless its run id exists (``ON CONFLICT DO NOTHING``); True if inserted."""
        backend = await self._ready()
        assert isinstance(backend, SQLiteBackend)
        return await backend.insert_if_absent(run_params(header))

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = checkpoint_params(checkpoint)
        backend = await self._ready()
        assert isinstance(backend, SQLiteBackend)
        try:
            await backend.write(backend.inline_insert_checkpoint, params, backend.append)
        except (IntegrityError, sqlite3.IntegrityError):
            raise self._conflict(checkpoint) from None


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background WAL checkpoint failed: %s", future.exception())
