"""The SQLite store: WAL mode, aiosqlite for reads and DDL, inline commits for small writes.

Why writes are inline: a checkpoint commit into a WAL database with ``synchronous=NORMAL``
takes about 20-30 µs (no fsync; durable against a killed process, which is what checkpoints
are for). Going through aiosqlite costs 140-320 µs per commit, almost all of it handing work
to aiosqlite's thread and back, which alone would blow the per-task checkpoint budget. So
``save_run`` and ``append_checkpoint`` commit on the caller's thread through one SQLAlchemy
connection that never waits for a lock (``busy_timeout=0``). If another process holds the
write lock, the write goes to the async engine instead, which waits (``busy_timeout``) on the
store's own loop without blocking the caller's event loop; while such writes are queued, later
ones queue behind them so they land in order. WAL checkpoints (copying the log back into
the database, which does fsync) run on the store's loop too, never on the caller's.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from pyagent.store import Checkpoint, RunHeader

from .base import SQLStore
from .errors import StoreUnavailableError
from .schema import migrate
from .urls import parse_sqlite

log = logging.getLogger("pyagent.sql")

#: How long a write on the store's loop waits for another process's write lock.
BUSY_TIMEOUT_MS = 10_000
#: Inline commits between two background WAL checkpoints (SQLite's own default is ~1000 pages).
WAL_CHECKPOINT_EVERY = 256
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


class SQLiteStore(SQLStore):
    """A store in one SQLite file (``sqlite://checkpoints.db``, ``sqlite:////abs/path.db``)."""

    kind = "SQLite"

    def __init__(self, url: str) -> None:
        self.path = parse_sqlite(url).path
        super().__init__(url)
        self._sync_engine: Engine | None = None
        self._sync_conn: Connection | None = None
        self._sync_lock = threading.Lock()
        self._queued = 0  # writes waiting on the store's loop; guarded by self._guard
        self._since_wal_checkpoint = 0
        self._writer_engine: AsyncEngine | None = None

    # -- engine -------------------------------------------------------------------------

    def _create_engine(self) -> AsyncEngine:
        # NullPool: aiosqlite runs a (non-daemon) thread per connection; pooled ones would
        # outlive a store that is never closed and keep the interpreter from exiting.
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool)
        _explicit_transactions(engine.sync_engine, busy_timeout_ms=BUSY_TIMEOUT_MS, autocheckpoint=True)
        self._writer_engine = engine.execution_options(pyagent_begin="IMMEDIATE")
        return engine

    def _writer(self) -> AsyncEngine:
        assert self._writer_engine is not None
        return self._writer_engine

    def _transaction_engine(self) -> AsyncEngine:
        return self._writer()

    def _upsert_run_statement(self) -> Any:
        runs = self.tables.runs
        stmt = sqlite_insert(runs)
        return stmt.on_conflict_do_update(
            index_elements=[runs.c.run_id],
            set_={c.name: stmt.excluded[c.name] for c in runs.c if c.name != "run_id"},
        )

    async def _before_open(self) -> None:
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise StoreUnavailableError(
                f"cannot open the SQLite store {self.url}: the directory {folder} does not exist "
                f"(the database file would be {self.path}); create the directory or fix the "
                "path in the URL (sqlite://name.db is relative to the working directory, "
                "sqlite:////abs/name.db is absolute)"
            )

    async def _migrate(self, conn: AsyncConnection) -> None:
        await conn.execution_options(pyagent_begin="IMMEDIATE")
        async with conn.begin():
            await conn.run_sync(migrate, self.tables.versions, where=f"{self.path} ({self.url})")

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
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

    def _sync_connection(self) -> Connection:
        if self._sync_conn is None:
            engine = create_engine(
                f"sqlite+pysqlite:///{self.path}",
                poolclass=NullPool,
                connect_args={"check_same_thread": False},
            )
            _explicit_transactions(engine, busy_timeout_ms=0, autocheckpoint=False)
            self._sync_engine = engine
            self._sync_conn = engine.connect().execution_options(pyagent_begin="IMMEDIATE")
        return self._sync_conn

    async def _write(self, statement: Any, params: dict[str, Any], on_loop: Any) -> None:
        if self._opened is None or not self._opened.done() or self._opened.exception() is not None:
            await self.open()
        if self._queued == 0 and self._sync_lock.acquire(blocking=False):
            try:
                if self._queued == 0 and self._try_inline(statement, params):
                    return
            finally:
                self._sync_lock.release()
        with self._guard:
            self._queued += 1
        try:
            await self._on_loop(on_loop, params)
        finally:
            with self._guard:
                self._queued -= 1

    def _try_inline(self, statement: Any, params: dict[str, Any]) -> bool:
        """Commit on this thread; False when another process holds the write lock."""
        try:
            conn = self._sync_connection()
            with conn.begin():
                conn.execute(statement, params)
        except OperationalError as exc:
            if _is_busy(exc):
                return False
            raise
        self._since_wal_checkpoint += 1
        if self._since_wal_checkpoint >= WAL_CHECKPOINT_EVERY:
            self._since_wal_checkpoint = 0
            loop = self._loop
            if loop is not None:
                loop.submit(self._wal_checkpoint, "PASSIVE").add_done_callback(_log_failure)
        return True

    async def _wal_checkpoint(self, mode: str) -> None:
        if self._engine is None:
            return
        async with self._engine.connect() as conn:
            await conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    async def save_run(self, header: RunHeader) -> None:
        """Insert or replace the header of ``header.run_id``."""
        await self._write(self._upsert_run, self._run_params(header), self._save_run_on_loop)

    async def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = self._checkpoint_params(checkpoint)
        try:
            await self._write(self._insert_checkpoint, params, self._append_on_loop)
        except IntegrityError:
            raise self._conflict(checkpoint) from None

    # -- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close both connections; the last one out folds the WAL back into the database."""
        with self._sync_lock:
            conn, engine = self._sync_conn, self._sync_engine
            self._sync_conn = self._sync_engine = None
            if conn is not None:
                conn.close()
            if engine is not None:
                engine.dispose()
        await super().close()

    async def _close_on_loop(self) -> None:
        try:
            await self._wal_checkpoint("TRUNCATE")
        except DBAPIError as exc:  # another process may be writing: it will checkpoint later
            log.debug("WAL checkpoint at close of %s skipped: %s", self.path, exc)
        await super()._close_on_loop()
        self._writer_engine = None


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background WAL checkpoint failed: %s", future.exception())
