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
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, event, func, literal_column, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from pyagent.plugin import BreakerRecord, Checkpoint, Claim, Lease, RunHeader

from . import schema
from .backend import Backend, Fenced, _blob, breaker_of, lease_of_params
from .base import (
    SQLStore,
    breaker_params,
    checkpoint_params,
    dequeue_params,
    release_token,
    run_params,
)
from .errors import StoreUnavailableError
from .schema import CANCELS, LEASES, READY_STATUSES, RUNS, VERSIONS, migrate
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
T = TypeVar("T")


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
        self.inline_insert_fenced = _Inline(self.insert_checkpoint_fenced)
        self.inline_select_token = _Inline(self.select_token)
        self.inline_select_payload = _Inline(self.select_payload)
        self.inline_claim = _Inline(self.claim)
        self.inline_select_lease = _Inline(self.select_lease)
        self.inline_renew = _Inline(self.renew)
        self.inline_release = _Inline(self.release)
        self.inline_create_run = _Inline(self.insert_run_if_absent)
        self.inline_insert_breaker = _Inline(self.insert_breaker)
        self.inline_swap_breaker = _Inline(self.update_breaker)
        self.inline_select_breaker = _Inline(self.select_breaker)

    # -- engine -------------------------------------------------------------------------

    def create_engine(self) -> AsyncEngine:
        # NullPool: aiosqlite runs a (non-daemon) thread per connection; pooled ones would
        # keep the interpreter from exiting. The hot path does not use this engine.
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool,
                                     hide_parameters=True)
        _explicit_transactions(engine.sync_engine, busy_timeout_ms=BUSY_TIMEOUT_MS, autocheckpoint=True)
        self._writer_engine = engine.execution_options(pyagent_begin="IMMEDIATE")
        return engine

    def writer(self) -> AsyncEngine:
        assert self._writer_engine is not None
        return self._writer_engine

    def transaction_engine(self) -> AsyncEngine:
        return self.writer()

    def claim_statement(self) -> Any:
        return self._claim_statement(sqlite_insert)

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

    def insert_interrupt_if_absent_statement(self) -> Any:
        t = self.tables.interrupts
        return sqlite_insert(t).on_conflict_do_nothing(index_elements=[t.c.run_id, t.c.task, t.c.position, t.c.level])

    def insert_cancel_if_absent_statement(self) -> Any:
        t = self.tables.cancels
        return sqlite_insert(t).on_conflict_do_nothing(index_elements=[t.c.run_id])

    def in_list(self, column: Any, name: str) -> Any:
        # A JSON array in one parameter: any length (SQLite caps bound variables), one statement.
        return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(name))))

    def list_param(self, values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    # -- the run queue: one BEGIN IMMEDIATE transaction -----------------------------------

    def dequeue_inline(self, params: dict[str, Any]) -> Callable[[sqlite3.Connection], list[Claim]]:
        def go(conn: sqlite3.Connection) -> list[Claim]:
            return self._transaction(conn, lambda: _dequeue(conn.execute, params))

        return go

    async def dequeue(self, params: dict[str, Any]) -> list[Claim]:
        async def body(conn: AsyncConnection, attempt: int) -> list[Claim]:
            return await conn.run_sync(lambda sync: _dequeue(sync.exec_driver_sql, params))

        return await self.transaction(body)
    def insert_breaker_if_absent_statement(self) -> Any:
        t = self.tables.breakers
        return sqlite_insert(t).on_conflict_do_nothing(index_elements=[t.c.name])

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

    def unavailable_hint(self, exc: BaseException) -> str | None:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig)
        folder = os.path.dirname(self.path)
        if "readonly" in text or "read-only" in text or isinstance(orig, PermissionError):
            return (f"the file {self.path} cannot be written: check that it and its directory "
                    f"{folder} are writable by this process and not on a read-only file system")
        if "disk is full" in text or "disk I/O error" in text:
            return f"the disk holding {self.path} is full or failing: free space there"
        if "unable to open" in text:
            return f"the file {self.path} cannot be opened: check that {folder} exists and is accessible"
        if "not a database" in text or "malformed" in text:
            return f"the file {self.path} is not an SQLite database (or is damaged)"
        if _is_busy(orig):
            return (f"another process held the write lock of {self.path} for more than "
                    f"{BUSY_TIMEOUT_MS // 1000} s; check for a stuck process using the same file")
        if isinstance(orig, (sqlite3.OperationalError, OSError)):
            return f"check the file {self.path}"
        return None

    # -- the inline write path ----------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The inline connection (callers hold ``_sync_lock``)."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _pragmas(conn, busy_timeout_ms=0, autocheckpoint=False)
            self._conn = conn
        return self._conn

    async def write(self, inline: Callable[[sqlite3.Connection], T],
                    on_loop: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Commit inline when the write lock is free, else queue the write on the backend's loop."""
        if self._queued == 0 and self._sync_lock.acquire(blocking=False):
            try:
                if self._queued == 0:
                    done, value = self._try_inline(inline)
                    if done:
                        return value
            finally:
                self._sync_lock.release()
        with self._queue_lock:
            self._queued += 1
        try:
            return await self.run(on_loop, *args)
        finally:
            with self._queue_lock:
                self._queued -= 1

    async def read_inline(self, inline: Callable[[sqlite3.Connection], T],
                          on_loop: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Read on the inline connection when it is free (in WAL mode a reader never waits for a
        writer: about 20 µs), else on the backend's loop."""
        if self._sync_lock.acquire(blocking=False):
            try:
                return inline(self._connection())
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            finally:
                self._sync_lock.release()
        return await self.run(on_loop, *args)

    def _try_inline(self, inline: Callable[[sqlite3.Connection], T]) -> tuple[bool, Any]:
        """Run ``inline`` on this thread; ``(False, None)`` when another connection holds the write lock."""
        try:
            value = inline(self._connection())
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return False, None
            raise
        self._since_wal_checkpoint += 1
        if self._since_wal_checkpoint >= WAL_CHECKPOINT_EVERY:
            self._since_wal_checkpoint = 0
            with contextlib.suppress(RuntimeError):  # RuntimeError: shutting down
                self.loop.submit(self._wal_checkpoint, "PASSIVE").add_done_callback(_log_failure)
        return True, value

    # Inline forms of the Backend's operations. In autocommit mode one statement is one
    # transaction; several go between BEGIN IMMEDIATE (busy at once if another process writes:
    # then the operation is queued on the loop instead) and COMMIT.

    @staticmethod
    def _exec(conn: sqlite3.Connection, inline: _Inline, params: dict[str, Any]) -> tuple[int, list[Any]]:
        cursor = conn.execute(inline.sql, inline.args(params))
        rows = cursor.fetchall()  # a RETURNING statement ends (and commits) once read
        return cursor.rowcount, rows

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            value = body()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT (disk full) leaves it open too
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return value

    def _fence_inline(self, conn: sqlite3.Connection, run_id: str, fence: str) -> None:
        row = conn.execute(self.inline_select_token.sql, self.inline_select_token.args({"run_id": run_id})).fetchone()
        if row is None or row[0] != fence:
            raise Fenced(run_id)

    def save_run_inline(self, params: dict[str, Any], fence: str | None) -> Callable[[sqlite3.Connection], None]:
        def go(conn: sqlite3.Connection) -> None:
            if fence is None:
                self._exec(conn, self.inline_upsert_run, params)
                return

            def body() -> None:
                self._fence_inline(conn, params["run_id"], fence)
                self._exec(conn, self.inline_upsert_run, params)

            self._transaction(conn, body)

        return go

    def append_inline(self, params: dict[str, Any], fence: str | None) -> Callable[[sqlite3.Connection], None]:
        def go(conn: sqlite3.Connection) -> None:
            if fence is None:
                self._exec(conn, self.inline_insert_checkpoint, params)
            elif self._exec(conn, self.inline_insert_fenced, {**params, "fence": fence})[0] == 0:
                raise Fenced(params["run_id"])

        return go

    def begin_run_inline(self, header: dict[str, Any], checkpoint: dict[str, Any],
                         fence: str | None) -> Callable[[sqlite3.Connection], None]:
        def go(conn: sqlite3.Connection) -> None:
            def body() -> None:
                if fence is not None:
                    self._fence_inline(conn, header["run_id"], fence)
                self._exec(conn, self.inline_upsert_run, header)
                self._exec(conn, self.inline_insert_checkpoint, checkpoint)

            self._transaction(conn, body)

        return go

    def end_run_inline(self, header: dict[str, Any], checkpoint: dict[str, Any], fence: str | None,
                       release: str | None) -> Callable[[sqlite3.Connection], None]:
        def go(conn: sqlite3.Connection) -> None:
            def body() -> None:
                if fence is not None:
                    self._fence_inline(conn, header["run_id"], fence)
                self._exec(conn, self.inline_insert_checkpoint, checkpoint)
                self._exec(conn, self.inline_upsert_run, header)
                if release is not None:
                    self._exec(conn, self.inline_release, {"run_id": header["run_id"], "token": release})

            self._transaction(conn, body)

        return go

    def claim_inline(self, params: dict[str, Any]) -> Callable[[sqlite3.Connection], Lease]:
        def go(conn: sqlite3.Connection) -> Lease:
            def body() -> Lease:
                if self._exec(conn, self.inline_claim, params)[1]:
                    return lease_of_params(params)
                row = conn.execute(self.inline_select_lease.sql,
                                   self.inline_select_lease.args(params)).fetchone()
                assert row is not None
                return Lease(row[0], row[1], row[2], float(row[3]), float(row[4]))

            return self._transaction(conn, body)

        return go

    def count_inline(self, inline: _Inline, params: dict[str, Any]) -> Callable[[sqlite3.Connection], bool]:
        def go(conn: sqlite3.Connection) -> bool:
            return self._exec(conn, inline, params)[0] > 0

        return go

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


# The queue's statements: plain SQL, run on the inline connection or through the async engine.
_LIVE_LEASES_OF = f"""
SELECT count(*) FROM {LEASES} l
WHERE l.expires_at > ? AND (SELECT r.workflow FROM {RUNS} r WHERE r.run_id = l.run_id) = ?
"""
# Read off ix_pyagent_runs_ready in order (the predicate is spelled as the index's, literally).
_READY = f"""
SELECT r.run_id, r.workflow, r.status, r.started_at, r.finished_at, r.payload FROM {RUNS} r
WHERE r.status IN ({", ".join(f"'{s}'" for s in READY_STATUSES)})
  AND r.workflow IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (SELECT 1 FROM {LEASES} l WHERE l.run_id = r.run_id AND l.expires_at > ?)
  AND NOT EXISTS (SELECT 1 FROM {CANCELS} c WHERE c.run_id = r.run_id)
ORDER BY r.started_at, r.run_id LIMIT ?
"""
_TAKE_LEASE = f"""
INSERT INTO {LEASES} (run_id, owner, token, claimed_at, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, token = excluded.token,
    claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
WHERE {LEASES}.expires_at <= ?
"""


def _dequeue(execute: Callable[[str, tuple[Any, ...]], Any], params: dict[str, Any]) -> list[Claim]:
    """``dequeue_runs`` inside a transaction that holds SQLite's write lock: nothing changes
    between the reads and the writes, so rooms are counted once and kept up to date here."""
    workflows: Mapping[str, int | None] = params["workflows"]
    owner, now, expires_at, limit = params["owner"], params["now"], params["expires_at"], params["limit"]
    room: dict[str, int | None] = {
        w: None if cap is None else cap - int(execute(_LIVE_LEASES_OF, (now, w)).fetchall()[0][0])
        for w, cap in workflows.items()}
    claims: list[Claim] = []
    while len(claims) < limit:
        open_ = [w for w, r in room.items() if r is None or r > 0]
        n = limit - len(claims)
        if all(room[w] is not None for w in open_):
            n = min(n, sum(room[w] or 0 for w in open_))
        if n < 1:
            break
        rows = execute(_READY, (json.dumps(open_), now, n)).fetchall()
        full = False
        for run_id, workflow, status, started_at, finished_at, payload in rows:
            left = room[workflow]
            if left is not None and left < 1:
                full = True  # more of this workflow were ready: the next round skips it
                continue
            token = secrets.token_hex(16)
            if execute(_TAKE_LEASE, (run_id, owner, token, now, expires_at, now)).rowcount != 1:
                continue
            if left is not None:
                room[workflow] = left - 1
            header = RunHeader(run_id, workflow, status, float(started_at),
                               None if finished_at is None else float(finished_at), _blob(payload))
            claims.append(Claim(header, Lease(run_id, owner, token, float(now), float(expires_at))))
        if len(rows) < n or not full:
            break
    return claims


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

    # Writes go inline when they can (see the module docstring), else through the Backend's
    # async operations on its loop.

    async def create_run(self, header: RunHeader) -> bool:
        """Insert ``header`` unless its run id exists (``ON CONFLICT DO NOTHING``); True if inserted."""
        params = run_params(header)
        b = await self._sqlite()
        return bool(await self._call(f"recording run {header.run_id!r}", header.run_id,
                                     lambda: b.write(b.count_inline(b.inline_create_run, params),
                                                     b.create_run, params)))

    async def save_run(self, header: RunHeader, *, fence: str | None = None) -> None:
        """Insert or replace the header of ``header.run_id`` (only under lease ``fence`` if given)."""
        params = run_params(header)
        b = await self._sqlite()
        await self._call(f"saving the header of run {header.run_id!r}", header.run_id,
                          lambda: b.write(b.save_run_inline(params, fence), b.save_run, params, fence))

    async def append_checkpoint(self, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Append one checkpoint; a second one with the same (run_id, seq) is an error."""
        params = checkpoint_params(checkpoint)
        b = await self._sqlite()
        await self._call(f"writing checkpoint {checkpoint.seq} of run {checkpoint.run_id!r}", checkpoint.run_id,
                          lambda: b.write(b.append_inline(params, fence), b.append, params, fence), checkpoint)

    async def begin_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None) -> None:
        """Save the header and the first checkpoint in one transaction."""
        hp, cp = run_params(header), checkpoint_params(checkpoint)
        b = await self._sqlite()
        await self._call(f"starting run {header.run_id!r}", header.run_id,
                          lambda: b.write(b.begin_run_inline(hp, cp, fence), b.begin_run, hp, cp, fence),
                          checkpoint)

    async def end_run(self, header: RunHeader, checkpoint: Checkpoint, *, fence: str | None = None,
                      release: bool = False) -> None:
        """Append the last checkpoint, save the header and (``release``) give up lease ``fence``,
        in one transaction: one commit where three were."""
        hp, cp = run_params(header), checkpoint_params(checkpoint)
        token = release_token(release, fence)
        b = await self._sqlite()
        await self._call(f"ending run {header.run_id!r}", header.run_id,
                          lambda: b.write(b.end_run_inline(hp, cp, fence, token), b.end_run, hp, cp, fence, token),
                          checkpoint)

    async def claim_run(self, run_id: str, owner: str, token: str, *, now: float, ttl: float,
                        replace: str | None = None) -> Lease:
        """Take the run's lease unless another claim holds one that has not expired (one upsert)."""
        if ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        params = {"run_id": run_id, "owner": owner, "token": token, "now": now, "expires_at": now + ttl,
                  "replace": replace}
        b = await self._sqlite()
        return await self._call(f"claiming run {run_id!r}", run_id,
                                 lambda: b.write(b.claim_inline(params), b.claim_run, params))

    async def renew_lease(self, run_id: str, token: str, *, now: float, ttl: float) -> bool:
        """Extend the lease if claim ``token`` still holds it; False when it was lost."""
        params = {"lease_run_id": run_id, "lease_token": token, "new_expires_at": now + ttl}
        b = await self._sqlite()
        return await self._call(f"renewing the lease of run {run_id!r}", run_id,
                                 lambda: b.write(b.count_inline(b.inline_renew, params), b.renew_lease, params))

    async def release_run(self, run_id: str, token: str) -> bool:
        """Give the lease up if claim ``token`` holds it."""
        params = {"run_id": run_id, "token": token}
        b = await self._sqlite()
        return await self._call(f"releasing run {run_id!r}", run_id,
                                 lambda: b.write(b.count_inline(b.inline_release, params), b.release_run, params))

    async def dequeue_runs(self, owner: str, *, now: float, ttl: float, limit: int,
                           workflows: Mapping[str, int | None]) -> list[Claim]:
        """Claim up to ``limit`` ready runs, oldest first, in one ``BEGIN IMMEDIATE`` transaction."""
        params = dequeue_params(owner, now=now, ttl=ttl, limit=limit, workflows=workflows)
        if params is None:
            return []
        b = await self._sqlite()
        return await self._call("taking runs off the queue", "",
                                 lambda: b.write(b.dequeue_inline(params), b.dequeue, params))
    async def get_breaker(self, name: str) -> BreakerRecord | None:
        """The shared circuit breaker's row of ``name``, or None (read inline when it can be)."""
        b = await self._sqlite()
        columns = b.tables.breakers.c.keys()

        def inline(conn: sqlite3.Connection) -> BreakerRecord | None:
            row = conn.execute(b.inline_select_breaker.sql, b.inline_select_breaker.args({"name": name})).fetchone()
            return None if row is None else breaker_of(dict(zip(columns, row, strict=True)))

        return await self._call(f"reading the circuit breaker of {name!r}", "",
                                lambda: b.read_inline(inline, b.get_breaker, name))

    async def swap_breaker(self, record: BreakerRecord, *, expected: int) -> bool:
        """Replace the breaker's row if its version is still ``expected`` (0: insert it if absent)."""
        params = breaker_params(record, expected)
        b = await self._sqlite()
        if expected == 0:
            inline, args = b.inline_insert_breaker, params
        else:
            inline, args = b.inline_swap_breaker, {**params, "b_name": record.name, "b_expected": expected}
        return bool(await self._call(f"writing the circuit breaker of {record.name!r}", "",
                                     lambda: b.write(b.count_inline(inline, args), b.swap_breaker,
                                                     params, expected)))

    async def _sqlite(self) -> SQLiteBackend:
        backend = await self._ready()
        assert isinstance(backend, SQLiteBackend)
        return backend


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background WAL checkpoint failed: %s", future.exception())
