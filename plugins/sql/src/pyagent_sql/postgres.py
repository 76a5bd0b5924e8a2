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
import hashlib
import logging
import secrets
import socket
import zlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Text, any_, bindparam, literal_column, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pyagent.plugin import Claim, Lease

from .backend import Backend, Fenced, _outcome, to_header
from .base import SQLStore
from .errors import StoreUnavailableError, describe
from .schema import CANCELS, LEASES, READY_STATUSES, RUNS, migrate
from .urls import PostgresTarget, describe_postgres, parse_postgres

log = logging.getLogger("pyagent.sql")

# Advisory-lock namespace for schema migrations ("pyag").
_LOCK_NAMESPACE = 0x70796167
#: Connections a process holds for single-statement writes (see ``execute_write``).
WRITE_LANES = 4
#: Statements one dequeue runs at most: more when candidates went to other replicas meanwhile.
DEQUEUE_ROUNDS = 4
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
        self._build_fenced_upsert()
        self._build_queue_statements()
        self._base_engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        # Held connections for single-statement writes: no pool checkout per write.
        self._lanes = [_Lane() for _ in range(WRITE_LANES)]
        self._next_lane = 0
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

    def insert_cancel_if_absent_statement(self) -> Any:
        t = self.tables.cancels
        return pg_insert(t).on_conflict_do_nothing(index_elements=[t.c.run_id])

    def in_list(self, column: Any, name: str) -> Any:
        return column == any_(bindparam(name, type_=ARRAY(Text)))

    def list_param(self, values: Sequence[str]) -> Any:
        return list(values)

    # -- the run queue ------------------------------------------------------------------

    def _build_fenced_upsert(self) -> None:
        # A fenced header write in one statement (one round trip, on the held connection) rather
        # than a transaction of four (BEGIN, lease check, upsert, COMMIT): the header is written
        # only while the claim holds the lease, locked FOR SHARE as the fenced checkpoint insert
        # does. No row written: the lease has passed to another claim.
        runs, leases = self.tables.runs, self.tables.leases
        held = (select(literal_column("1")).select_from(leases)
                .where(leases.c.run_id == bindparam("run_id"), leases.c.token == bindparam("fence"))
                .with_for_update(read=True).exists())
        columns = [c.name for c in runs.c]
        ins = pg_insert(runs).from_select(
            columns, select(*(bindparam(c.name, type_=c.type) for c in runs.c)).where(held))
        self.upsert_run_fenced = ins.on_conflict_do_update(
            index_elements=[runs.c.run_id], set_={c: ins.excluded[c] for c in columns if c != "run_id"})

    async def save_run(self, params: dict[str, Any], fence: str | None = None) -> None:
        if fence is None:
            await super().save_run(params)
            return
        count, _ = await self.execute_write(self.upsert_run_fenced, {**params, "fence": fence})
        if count == 0:
            raise Fenced(params["run_id"])

    def _build_queue_statements(self) -> None:
        # Plain SQL: the statement is easier to read (and to check with EXPLAIN) as written
        # than as its Core equivalent. Table names are qualified here, as schema_translate_map
        # would do for Core statements.
        prefix = "" if self.target.schema is None else '"' + self.target.schema.replace('"', '""') + '".'
        runs, leases, cancels = prefix + RUNS, prefix + LEASES, prefix + CANCELS
        ready = ", ".join(f"'{s}'" for s in READY_STATUSES)  # literal: matches ix_pyagent_runs_ready
        # One statement per batch. ``served`` gives each workflow asked for its room: None when
        # unbounded, else max_active minus its runs' live leases, counted lease by lease (a
        # subquery per live lease: a join would read every run of the workflow ever recorded).
        # ``candidates`` are the oldest ready runs of workflows with room, locked and skipped
        # when another dequeue has them locked (SKIP LOCKED), read off ix_pyagent_runs_ready in
        # order. ``chosen`` keeps at most ``room`` of each workflow.
        #
        # The leases: this statement's snapshot may predate another claim of a candidate (the
        # row lock on the run does not cover its lease), so a lease is only taken where none is
        # live now, and without ever waiting on a lease row: the run's owner may hold it (a
        # fenced write locks the lease, then the run's row, which this statement has locked:
        # waiting would deadlock). Expired leases (``stale``) are locked SKIP LOCKED, which also
        # re-reads each row as committed now, and taken over; runs with no lease row get one
        # inserted, ON CONFLICT DO NOTHING, which does not wait on a committed row.
        # Every candidate comes back, its token NULL when not claimed; ``chosen`` false means
        # it was left for want of room.
        self.dequeue_sql = text(f"""
WITH served AS (
    SELECT w.name, CASE WHEN w.cap IS NULL THEN NULL ELSE w.cap - (
        SELECT count(*) FROM {leases} l
        WHERE l.expires_at > :now AND (SELECT r.workflow FROM {runs} r WHERE r.run_id = l.run_id) = w.name
    ) END AS room
    FROM unnest(CAST(:names AS TEXT[]), CAST(:caps AS INTEGER[])) AS w(name, cap)
), candidates AS (
    SELECT r.run_id, r.workflow, r.status, r.started_at, r.finished_at, r.payload
    FROM {runs} r
    WHERE r.status IN ({ready})
      AND r.workflow IN (SELECT s.name FROM served s WHERE s.room IS NULL OR s.room > 0)
      AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.run_id = r.run_id AND l.expires_at > :now)
      AND NOT EXISTS (SELECT 1 FROM {cancels} c WHERE c.run_id = r.run_id)
    ORDER BY r.started_at, r.run_id
    LIMIT :n
    FOR UPDATE OF r SKIP LOCKED
), ranked AS (
    SELECT c.run_id, c.workflow,
           row_number() OVER (PARTITION BY c.workflow ORDER BY c.started_at, c.run_id) AS nth,
           row_number() OVER (ORDER BY c.started_at, c.run_id) AS pos
    FROM candidates c
), chosen AS (
    SELECT k.run_id, k.pos FROM ranked k JOIN served s ON s.name = k.workflow
    WHERE s.room IS NULL OR k.nth <= s.room
), stale AS (
    SELECT l.run_id FROM {leases} l
    WHERE l.run_id IN (SELECT run_id FROM chosen) AND l.expires_at <= :now
    FOR UPDATE SKIP LOCKED
), taken_over AS (
    UPDATE {leases} AS l
    SET owner = :owner, token = (CAST(:tokens AS TEXT[]))[h.pos], claimed_at = :now, expires_at = :expires_at
    FROM chosen h
    WHERE l.run_id = h.run_id AND l.run_id IN (SELECT run_id FROM stale) AND l.expires_at <= :now
    RETURNING l.run_id, l.token
), fresh AS (
    INSERT INTO {leases} (run_id, owner, token, claimed_at, expires_at)
    SELECT h.run_id, :owner, (CAST(:tokens AS TEXT[]))[h.pos], :now, :expires_at FROM chosen h
    WHERE NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.run_id = h.run_id)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, token
), claimed AS (
    SELECT run_id, token FROM taken_over UNION ALL SELECT run_id, token FROM fresh
)
SELECT c.run_id, c.workflow, c.status, c.started_at, c.finished_at, c.payload, m.token,
       c.run_id IN (SELECT run_id FROM chosen) AS chosen
FROM candidates c LEFT JOIN claimed m ON m.run_id = c.run_id
ORDER BY c.started_at, c.run_id
""")
        # Who counts and claims runs of a bounded workflow, one transaction at a time: taken in
        # sorted order, so two replicas serving overlapping sets cannot deadlock.
        self.lock_workflows_sql = text(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k")
        # A retried dequeue whose first attempt committed unseen: its leases carry its tokens.
        self.claimed_by_tokens_sql = text(f"""
SELECT r.run_id, r.workflow, r.status, r.started_at, r.finished_at, r.payload, l.token, TRUE AS chosen
FROM {leases} l JOIN {runs} r ON r.run_id = l.run_id
WHERE l.token = ANY(CAST(:tokens AS TEXT[])) AND l.owner = :owner
ORDER BY r.started_at, r.run_id
""")

    def workflow_lock_key(self, workflow: str) -> int:
        """A stable signed 64-bit advisory-lock key for ``workflow`` in this schema."""
        digest = hashlib.blake2b(f"pyagent-queue\0{self.target.schema or ''}\0{workflow}".encode(),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    async def dequeue(self, params: dict[str, Any]) -> list[Claim]:
        workflows: dict[str, int | None] = params["workflows"]
        owner, now, expires_at = params["owner"], params["now"], params["expires_at"]
        keys = sorted({self.workflow_lock_key(w) for w, cap in workflows.items() if cap is not None})

        def claims_of(rows: Sequence[Any]) -> list[Claim]:
            return [_claim(row, owner, now, expires_at) for row in rows if row.token is not None]

        if not keys:
            # Nothing to count: each statement is a transaction of its own, on a held
            # connection (one round trip). A statement whose commit went through but whose
            # answer was lost is found again by its tokens before it would be retried.
            async def statement(args: dict[str, Any]) -> Sequence[Any]:
                async def already(conn: AsyncConnection) -> Any:
                    rows = (await conn.execute(self.claimed_by_tokens_sql,
                                               {"tokens": args["tokens"], "owner": owner})).all()
                    return (len(rows), rows) if rows else None

                _, rows = await self.execute_write(self.dequeue_sql, args, already)
                return list(rows)

            claims: list[Claim] = []
            try:
                await self._claim_rounds(params, statement, claims_of, claims)
            except Exception as exc:
                if not claims:
                    raise
                # The first statements committed: hand their runs out rather than leave them
                # leased to nobody until the leases expire. The next call meets the error.
                log.warning("%s: taking more runs off the queue failed (%s); returning the %d taken",
                            self.display, describe(exc), len(claims))
            return claims

        tried: list[str] = []  # tokens of earlier attempts

        async def body(conn: AsyncConnection, attempt: int) -> list[Claim]:
            if attempt and tried:
                rows = (await conn.execute(self.claimed_by_tokens_sql, {"tokens": tried, "owner": owner})).all()
                if rows:
                    return claims_of(rows)
            # Counting and claiming runs of bounded workflows, one transaction at a time; the
            # statements after the lock see every claim committed before it was granted.
            await conn.execute(self.lock_workflows_sql, {"keys": keys})

            async def statement(args: dict[str, Any]) -> Sequence[Any]:
                tried.extend(args["tokens"])
                return list((await conn.execute(self.dequeue_sql, args)).all())

            claims: list[Claim] = []
            await self._claim_rounds(params, statement, claims_of, claims)
            return claims

        return await self.transaction(body)

    @staticmethod
    async def _claim_rounds(params: dict[str, Any], statement: Callable[[dict[str, Any]], Awaitable[Sequence[Any]]],
                            claims_of: Callable[[Sequence[Any]], list[Claim]], claims: list[Claim]) -> None:
        """Run the dequeue statement until ``claims`` holds ``limit`` runs or more would not help."""
        open_: dict[str, int | None] = dict(params["workflows"])
        limit = params["limit"]
        for _ in range(DEQUEUE_ROUNDS):
            n = limit - len(claims)
            if all(cap is not None for cap in open_.values()):
                n = min(n, sum(max(cap, 0) for cap in open_.values() if cap is not None))
            if n < 1:
                return
            rows = await statement({
                "names": list(open_), "caps": list(open_.values()), "n": n, "now": params["now"],
                "expires_at": params["expires_at"], "owner": params["owner"],
                "tokens": [secrets.token_hex(16) for _ in range(n)]})
            claims += claims_of(rows)
            full = {row.workflow for row in rows if not row.chosen}
            raced = any(row.chosen and row.token is None for row in rows)
            # Another round (a new statement, so a fresh snapshot) helps when runs went to
            # another replica after this one's snapshot was taken, or when this one stopped
            # at its LIMIT with runs left for want of room: the next skips full workflows.
            open_ = {w: cap for w, cap in open_.items() if w not in full}
            if len(claims) >= limit or not open_ or not (raced or (full and len(rows) == n)):
                return
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
        """One statement on a held autocommit connection, retried on fresh ones when it dropped.

        A lone run's writes all go to the first held connection. Writes arriving while it is
        busy take the next free one (up to ``WRITE_LANES``): every commit waits for its WAL
        flush, and commits in flight together are flushed together, so runs finishing at once
        in one process are not held to one flush at a time. A run awaits each of its writes,
        so its own writes still land in order.
        """
        lane = next((lane for lane in self._lanes if not lane.lock.locked()), None)
        if lane is None:  # all busy: queue on one, in turn
            self._next_lane = (self._next_lane + 1) % len(self._lanes)
            lane = self._lanes[self._next_lane]
        deadline = self._deadline()
        attempt = 0
        async with lane.lock:
            while True:
                try:
                    if lane.conn is None:
                        lane.conn = await self.writer().connect()
                    conn = lane.conn
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
                    lane.conn = None
                    self._discard(conn)
                    await self._pause(attempt, deadline, exc)
                except BaseException:
                    # Cancelled mid-statement (a run cancelled while its checkpoint waited on
                    # the server): the connection's state is unknown, so it is not reused.
                    lane.conn = None
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
        for lane in self._lanes:
            if lane.conn is not None:
                conn, lane.conn = lane.conn, None
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


class _Lane:
    """A held write connection and the lock that gives it to one write at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # bound to the backend's loop on first use
        self.conn: AsyncConnection | None = None


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


def _claim(row: Any, owner: str, now: float, expires_at: float) -> Claim:
    return Claim(to_header(row), Lease(row.run_id, owner, row.token, float(now), float(expires_at)))


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
