"""The PostgreSQL store on asyncpg.

Single-statement writes run in autocommit mode: one round trip instead of three
(BEGIN, statement, COMMIT). Opening takes a transaction-scoped advisory lock, so processes
starting together create or migrate the schema exactly once.

Connections the server dropped (a restart, a failover, an idle timeout,
``pg_terminate_backend``) are replaced rather than reused: pooled connections are pinged when
checked out, a read that still meets a dead connection is tried once more on a fresh one,
and a write is retried on fresh connections for up to ``WRITE_RETRY_SECONDS``, so a server
that came back is used at once and a run does not fail for one dropped connection. Retrying
is safe: a checkpoint insert whose commit was acknowledged too late is recognised by its
(run id, seq) and payload, and every other write is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import zlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .backend import Backend, _outcome
from .base import SQLStore
from .errors import StoreUnavailableError
from .schema import migrate
from .urls import PostgresTarget, describe_postgres, parse_postgres

# Advisory-lock namespace for schema migrations ("pyag").
_LOCK_NAMESPACE = 0x70796167
#: How long a write keeps retrying on fresh connections while the server is unreachable.
WRITE_RETRY_SECONDS = 10.0
# asyncpg errors that mean the connection (not the statement) failed.
_DISCONNECTS = {"ConnectionDoesNotExistError", "ConnectionFailureError", "InterfaceError",
                "InternalClientError", "AdminShutdownError", "CrashShutdownError",
                "CannotConnectNowError", "ConnectionRejectionError", "TooManyConnectionsError"}


class PostgresBackend(Backend):
    """One PostgreSQL database (and schema): an asyncpg pool on the backend's loop."""

    kind = "PostgreSQL"
    retry_seconds = WRITE_RETRY_SECONDS
    serialize_transactions = False  # row locks suffice; the hot path's held connection is apart

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        super().__init__(_key(target), target.display)
        self._base_engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        self._write_conn: AsyncConnection | None = None  # held: no pool checkout per write
        self._closing: set[asyncio.Task[None]] = set()  # discarded write connections closing

    def create_engine(self) -> AsyncEngine:
        base = create_async_engine(
            self.target.sqlalchemy_url,
            connect_args=dict(self.target.connect_args),
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,  # a connection the server dropped while idle is replaced at checkout
            hide_parameters=True,  # statement parameters are task outputs: never in messages
        )
        self._base_engine = base
        engine = base
        if self.target.schema is not None:
            engine = base.execution_options(schema_translate_map={None: self.target.schema})
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return engine

    def writer(self) -> AsyncEngine:
        assert self._autocommit is not None
        return self._autocommit

    def claim_statement(self) -> Any:
        return self._claim_statement(pg_insert)

    def upsert_run_statement(self) -> Any:
        runs = self.tables.runs
        stmt = pg_insert(runs)
        return stmt.on_conflict_do_update(
            index_elements=[runs.c.run_id],
            set_={c.name: stmt.excluded[c.name] for c in runs.c if c.name != "run_id"},
        )

    def insert_run_if_absent_statement(self) -> Any:
        runs = self.tables.runs
        return pg_insert(runs).on_conflict_do_nothing(index_elements=[runs.c.run_id])

    def insert_interrupt_if_absent_statement(self) -> Any:
        t = self.tables.interrupts
        return pg_insert(t).on_conflict_do_nothing(index_elements=[t.c.run_id, t.c.task, t.c.position, t.c.level])

    def insert_breaker_if_absent_statement(self) -> Any:
        t = self.tables.breakers
        return pg_insert(t).on_conflict_do_nothing(index_elements=[t.c.name])

    async def migrate(self, conn: AsyncConnection) -> None:
        key = zlib.crc32((self.target.schema or "").encode()) - 2**31
        async with conn.begin():
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _LOCK_NAMESPACE, "key": key}
            )
            if self.target.schema is not None:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.target.schema}"')
            await conn.run_sync(migrate, self.tables.versions, where=self.display)

    async def schema_version(self) -> int:
        try:
            return await super().schema_version()
        except ProgrammingError:  # the table was dropped since: start over
            return 0

    def is_disconnect(self, exc: BaseException) -> bool:
        for e in _chain(exc):
            if isinstance(e, DBAPIError) and e.connection_invalidated:
                return True
            if isinstance(e, (ConnectionError, socket.gaierror, TimeoutError)) or type(e) is OSError:
                return True
            if type(e).__name__ in _DISCONNECTS:
                return True
            state = getattr(e, "sqlstate", None)
            if isinstance(state, str) and state[:2] in ("08", "57"):  # connection / operator intervention
                return True
            if "another operation is in progress" in str(e) or "connection is closed" in str(e):
                return True
        return False

    def unavailable_hint(self, exc: BaseException) -> str | None:
        if self.is_disconnect(exc):
            return (f"the server could not be reached for {self.retry_seconds:g} s: check that "
                    f"PostgreSQL is running ({_pg_isready(self.target.url)}) and reachable")
        return None

    async def execute_write(self, statement: Any, params: dict[str, Any],
                            on_retry: Callable[[AsyncConnection], Awaitable[Any]] | None = None) -> Any:
        """One statement on the held autocommit connection, retried on fresh ones when it dropped."""
        assert self.write_lock is not None
        deadline = self._deadline()
        attempt = 0
        async with self.write_lock:
            while True:
                try:
                    if self._write_conn is None:
                        self._write_conn = await self.writer().connect()
                    conn = self._write_conn
                except Exception as exc:  # the server is still away
                    await self._pause(attempt, deadline, exc)
                    attempt += 1
                    continue
                try:
                    if attempt and on_retry is not None:
                        done = await on_retry(conn)
                        if done is not None:
                            self._reached()
                            return done
                    outcome = await _outcome(conn, statement, params)
                    self._reached()
                    return outcome
                except IntegrityError:
                    raise  # the statement was refused; the connection is fine
                except Exception as exc:
                    # A broken connection: SQLAlchemy has invalidated it, and reusing it would
                    # fail every later write. Retry on a fresh one while that may help.
                    self._write_conn = None
                    self._discard(conn)
                    await self._pause(attempt, deadline, exc)
                except BaseException:
                    # Cancelled mid-statement (a run cancelled while its checkpoint waited on
                    # the server): the connection's state is unknown, so it is not reused.
                    self._write_conn = None
                    self._discard(conn)
                    raise
                attempt += 1

    def _discard(self, conn: AsyncConnection) -> None:
        """Close ``conn`` in a task of its own, so a cancellation in progress cannot stop it."""

        async def close() -> None:
            with contextlib.suppress(Exception):
                await conn.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def dispose(self) -> None:
        if self._write_conn is not None:
            conn, self._write_conn = self._write_conn, None
            with contextlib.suppress(Exception):
                await conn.close()
        if self._base_engine is not None:
            await self._base_engine.dispose()
        self._base_engine = self._autocommit = self.engine = None

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        chain = _chain(exc)
        names = {type(e).__name__ for e in chain}
        detail = next((f"{type(e).__name__}: {e}" for e in reversed(chain) if str(e)), type(exc).__name__)
        where = describe_postgres(self.target)
        if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
            hint = (
                "the server refused the login: check the user name and password in the URL "
                "and the server's pg_hba.conf"
            )
        elif "InvalidCatalogNameError" in names:
            hint = "the database does not exist: create it (createdb) or fix its name in the URL"
        elif any(isinstance(e, (ConnectionError, socket.gaierror, TimeoutError, OSError)) for e in chain):
            hint = (
                "the server could not be reached: check that PostgreSQL is running and accepts "
                f"connections there ({_pg_isready(self.target.url)}), the host and port in the "
                "URL, and any firewall"
            )
        else:
            hint = "check the URL, the server log and that the user may create tables"
        return StoreUnavailableError(
            f"cannot open the PostgreSQL store {self.display} ({where}): {detail}; {hint}"
        )


class PostgresStore(SQLStore):
    """A store in a PostgreSQL database (``postgresql://user@host:5432/db[?schema=name]``)."""

    def __init__(self, url: str) -> None:
        self.target = parse_postgres(url)
        super().__init__(url)

    @property
    def display_url(self) -> str:
        return self.target.display

    @property
    def schema(self) -> str | None:
        """The schema the tables live in (None: the connection's search_path, usually public)."""
        return self.target.schema

    def _key(self) -> Hashable:
        return _key(self.target)

    def _make_backend(self) -> Backend:
        return PostgresBackend(self.target)


def _key(target: PostgresTarget) -> Hashable:
    return ("postgresql", target.sqlalchemy_url, target.schema, tuple(sorted((k, repr(v)) for k, v in target.connect_args.items())))


def _pg_isready(url: str) -> str:
    parts = urlsplit(url)
    return f"pg_isready -h {parts.hostname or 'localhost'} -p {parts.port or 5432}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (DBAPI ``orig``), and its causes, without repeats."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return seen
