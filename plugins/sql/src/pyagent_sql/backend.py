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
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Double,
    LargeBinary,
    Row,
    String,
    Text,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pyagent.plugin import (
    BreakerRecord,
    Checkpoint,
    Claim,
    InterruptRecord,
    Lease,
    PyAgentError,
    RunHeader,
    StoredRun,
    StoreError,
)

from . import schema
from ._loop import LoopThread, wait_future
from .errors import SchemaVersionError, StoreUnavailableError, describe
from .schema import define_tables

log = logging.getLogger("pyagent.sql")
T = TypeVar("T")

#: Idle backends (no open store) kept ready for the next run; older ones are shut down.
MAX_IDLE = 4
#: Statuses of runs that have ended: a cancel request changes nothing for them.
ENDED_STATUSES = frozenset({"completed", "failed", "cancelled", "skipped"})


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

    def insert_interrupt_if_absent_statement(self) -> Any:
        """``INSERT`` of a question that does nothing when its run has one at that (task, position, level)."""
        raise NotImplementedError

    def insert_cancel_if_absent_statement(self) -> Any:
        """``INSERT`` of a cancel request that does nothing when the run has one (the first one stays)."""
        raise NotImplementedError

    def in_list(self, column: Any, name: str) -> Any:
        """``column IN <the list bound as name>``, one parameter whatever the list's length
        (see ``list_param``), so the statement is compiled and prepared once."""
        raise NotImplementedError

    def list_param(self, values: Sequence[str]) -> Any:
        """The value bound for a list of ``in_list``."""
        raise NotImplementedError

    async def dequeue(self, params: dict[str, Any]) -> list[Claim]:
        """Claim ready runs off the queue (see ``SQLStore.dequeue_runs``) in one transaction."""
    def insert_breaker_if_absent_statement(self) -> Any:
        """``INSERT`` of a shared breaker's row that does nothing when the row exists."""
        raise NotImplementedError

    async def migrate(self, conn: AsyncConnection) -> None:
        """Create or upgrade the schema under a lock that other processes respect."""
        raise NotImplementedError

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot open the {self.kind} store {self.display}: {describe(exc)}")

    def failure(self, action: str, exc: BaseException) -> StoreError:
        """A driver error met while ``action`` as the kernel's error type, without parameter values.

        StoreUnavailableError when the database could not be reached or written (with what to
        check), StoreError for anything else.
        """
        hint = self.unavailable_hint(exc)
        if hint is not None:
            return StoreUnavailableError(
                f"{action} in the {self.kind} store {self.display} failed: {describe(exc)}; {hint}")
        return StoreError(f"{action} in the {self.kind} store {self.display} failed: {describe(exc)}")

    def unavailable_hint(self, exc: BaseException) -> str | None:
        """What to check when ``exc`` means the database is unreachable or unwritable, else None."""
        if self.is_disconnect(exc) or isinstance(getattr(exc, "orig", exc), OSError):
            return "check that the database is reachable"
        return None

    async def before_start(self) -> None:
        """Checks that need no connection (a missing directory, ...)."""

    async def schema_version(self) -> int:
        """The version the database records now (checked at every open, once more on a fresh
        connection if the server dropped the one it was read on)."""
        async def body(conn: AsyncConnection) -> Any:
            return (await conn.execute(select(func.max(self.tables.versions.c.version)))).scalar()

        return int(await self.read(body) or 0)

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

    def claim_statement(self) -> Any:
        """INSERT ... ON CONFLICT DO UPDATE ... WHERE <free> RETURNING token (the dialect's upsert)."""
        raise NotImplementedError

    def _claim_statement(self, insert: Callable[[Any], Any]) -> Any:
        leases = self.tables.leases
        ins = insert(leases).values(
            run_id=bindparam("run_id"), owner=bindparam("owner"), token=bindparam("token"),
            claimed_at=bindparam("now", type_=Double), expires_at=bindparam("expires_at", type_=Double),
        )
        return ins.on_conflict_do_update(
            index_elements=[leases.c.run_id],
            set_={c: ins.excluded[c] for c in ("owner", "token", "claimed_at", "expires_at")},
            # Free: expired, already this claim's (a retried claim), or the one to replace.
            where=or_(leases.c.expires_at <= bindparam("now", type_=Double),
                      leases.c.token == ins.excluded.token,
                      leases.c.token == bindparam("replace", type_=Text)),
        ).returning(leases.c.token)

    def _build_statements(self) -> None:
        runs, cps, leases = self.tables.runs, self.tables.checkpoints, self.tables.leases
        self.upsert_run = self.upsert_run_statement()
        self.insert_run_if_absent = self.insert_run_if_absent_statement()
        self.insert_checkpoint = cps.insert()
        # One statement, so the hot path stays one round trip: the checkpoint is inserted only
        # while the writer's claim holds the run's lease. FOR SHARE (PostgreSQL; SQLite has one
        # writer at a time anyway) keeps the lease row from changing until the write commits: a
        # claim taking the run over waits for it, and so sees it when it loads the run, or it
        # commits first and the write finds the lease gone. A plain read would let a write whose
        # check passed just before the takeover land unseen afterwards.
        held = (select(literal_column("1")).select_from(leases)
                .where(leases.c.run_id == bindparam("run_id"), leases.c.token == bindparam("fence"))
                .with_for_update(read=True).exists())
        self.insert_checkpoint_fenced = cps.insert().from_select(
            ["run_id", "seq", "kind", "payload", "created_at"],
            select(bindparam("run_id", type_=Text), bindparam("seq", type_=BigInteger),
                   bindparam("kind", type_=String), bindparam("payload", type_=LargeBinary),
                   bindparam("created_at", type_=Double)).where(held),
        )
        self.select_payload = select(cps.c.payload).where(
            cps.c.run_id == bindparam("run_id"), cps.c.seq == bindparam("seq"))
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
        self.claim = self.claim_statement()
        self.select_lease = select(leases).where(leases.c.run_id == bindparam("run_id"))
        # Read in a write transaction to check its fence: locked like ``held`` above.
        self.select_token = (select(leases.c.token).where(leases.c.run_id == bindparam("run_id"))
                             .with_for_update(read=True))
        # UPDATE reserves the column names for its SET values: the WHERE takes other names.
        self.renew = (update(leases)
                      .where(leases.c.run_id == bindparam("lease_run_id"), leases.c.token == bindparam("lease_token"))
                      .values(expires_at=bindparam("new_expires_at", type_=Double)))
        self.release = delete(leases).where(leases.c.run_id == bindparam("run_id"),
                                            leases.c.token == bindparam("token"))
        questions = self.tables.interrupts
        self.insert_interrupt = self.insert_interrupt_if_absent_statement()
        self.select_interrupt = select(questions).where(questions.c.id == bindparam("id"))
        self.select_interrupt_at = select(questions).where(
            questions.c.run_id == bindparam("run_id"), questions.c.task == bindparam("task"),
            questions.c.position == bindparam("position"), questions.c.level == bindparam("level"))
        # Only a pending question is resolved: the first answer wins, a replay changes nothing.
        cancels = self.tables.cancels
        self.insert_cancel = self.insert_cancel_if_absent_statement()
        self.select_cancel = select(cancels).where(cancels.c.run_id == bindparam("run_id"))
        self.select_cancels = select(cancels.c.run_id, cancels.c.reason).where(
            self.in_list(cancels.c.run_id, "run_ids"))
        # Locks the run's row on PostgreSQL while a cancel is decided: a dequeue skips the run
        # meanwhile, or (when it locked first) has committed its lease before this reads it.
        self.select_run_status = (select(runs.c.status).where(runs.c.run_id == bindparam("run_id"))
                                  .with_for_update())
        self.select_live_lease = select(leases.c.token).where(
            leases.c.run_id == bindparam("run_id"), leases.c.expires_at > bindparam("now", type_=Double))
        self.mark_cancelled = (update(runs).where(runs.c.run_id == bindparam("cancel_run_id"))
                               .values(status="cancelled", finished_at=bindparam("cancel_now", type_=Double)))
        self.resolve_interrupt = (
            update(questions)
            .where(questions.c.id == bindparam("interrupt_id"), questions.c.status == "pending")
            .values(status=bindparam("new_status", type_=String), answer=bindparam("new_answer", type_=LargeBinary),
                    answered_by=bindparam("new_answered_by", type_=Text),
                    answered_at=bindparam("new_answered_at", type_=Double)))
        self._build_breaker_statements()

    def _build_breaker_statements(self) -> None:
        breakers = self.tables.breakers
        self.select_breaker = select(breakers).where(breakers.c.name == bindparam("name"))
        self.insert_breaker = self.insert_breaker_if_absent_statement()
        # The compare-and-swap: the row is replaced only while it has the version the caller read.
        # (UPDATE reserves the column names for its SET values: the WHERE takes other names.)
        self.update_breaker = (
            update(breakers)
            .where(breakers.c.name == bindparam("b_name"), breakers.c.version == bindparam("b_expected"))
            .values({c.name: bindparam(c.name, type_=c.type) for c in breakers.c if c.name != "name"}))

    # -- running statements, with retries after a dropped connection ------------------

    #: How long a write keeps retrying on fresh connections after the server dropped one
    #: (PostgreSQL restarted, failed over, or terminated the session); 0: no retries.
    retry_seconds = 0.0
    #: Whether write transactions take ``write_lock`` (SQLite: one writer at a time).
    serialize_transactions = True

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone (so a fresh one may succeed)."""
        return False

    _down_since: float | None = None  # when writes started failing to reach the server

    def _deadline(self) -> float:
        """Until when a write may retry: the full bound, or a last short try once the server
        has been unreachable for that long already (a run's final writes then fail fast)."""
        now = time.monotonic()
        down = self._down_since
        if down is not None and now - down >= self.retry_seconds:
            return now + min(1.0, self.retry_seconds)
        return now + self.retry_seconds

    def _reached(self) -> None:
        self._down_since = None

    async def _pause(self, attempt: int, deadline: float, exc: BaseException) -> None:
        """Wait before retry ``attempt``, or re-raise ``exc`` when retrying is over."""
        if not self.is_disconnect(exc):
            raise exc
        if self._down_since is None:
            self._down_since = time.monotonic()
        if time.monotonic() >= deadline:
            raise exc
        log.info("%s: the connection was lost (%s); retrying on a fresh one", self.display, describe(exc))
        await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))

    async def execute_write(self, statement: Any, params: dict[str, Any],
                            on_retry: Callable[[AsyncConnection], Awaitable[Any]] | None = None) -> Any:
        """One statement in its own transaction; returns ``(rowcount, rows)``.

        ``on_retry(conn)``, run before a retry, may return a result that makes the retry
        unnecessary (the first attempt was committed but its answer lost).
        """
        assert self.write_lock is not None
        async with self.write_lock, self.writer().begin() as conn:
            return await _outcome(conn, statement, params)

    async def transaction(self, body: Callable[[AsyncConnection, int], Awaitable[T]]) -> T:
        """``body(conn, attempt)`` in one write transaction, retried on a fresh connection after a
        dropped one (within ``retry_seconds``)."""
        deadline = self._deadline()
        attempt = 0
        while True:
            try:
                if self.serialize_transactions:
                    assert self.write_lock is not None
                    async with self.write_lock, self.transaction_engine().begin() as conn:
                        value = await body(conn, attempt)
                else:
                    async with self.transaction_engine().begin() as conn:
                        value = await body(conn, attempt)
                self._reached()
                return value
            except (IntegrityError, Fenced):
                raise
            except Exception as exc:
                await self._pause(attempt, deadline, exc)
            attempt += 1

    async def read(self, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``body(conn)`` on a pooled connection, once more on a fresh one after a dropped one."""
        for attempt in (0, 1):
            try:
                async with self.reader().connect() as conn:
                    return await body(conn)
            except Exception as exc:
                if attempt or not self.is_disconnect(exc):
                    raise
                log.info("%s: the connection was lost (%s); reading again on a fresh one",
                         self.display, describe(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- operations, on the backend's loop ----------------------------------------------

    async def save_run(self, params: dict[str, Any], fence: str | None = None) -> None:
        if fence is None:
            await self.execute_write(self.upsert_run, params)
            return

        async def body(conn: AsyncConnection, attempt: int) -> None:
            await self._check_fence(conn, params["run_id"], fence)
            await conn.execute(self.upsert_run, params)

        await self.transaction(body)

    async def create_run(self, params: dict[str, Any]) -> bool:
        """Insert a run header unless its run id exists; True if this call inserted it."""
        count, _ = await self.execute_write(self.insert_run_if_absent, params)
        return bool(count == 1)

    async def append(self, params: dict[str, Any], fence: str | None = None) -> None:
        async def already_there(conn: AsyncConnection) -> Any:
            return (1, []) if await self._stored_same(conn, params) else None

        if fence is None:
            await self.execute_write(self.insert_checkpoint, params, already_there)
            return
        count, _ = await self.execute_write(self.insert_checkpoint_fenced, {**params, "fence": fence},
                                            already_there)
        if count == 0:
            raise Fenced(params["run_id"])

    async def begin_run(self, header: dict[str, Any], checkpoint: dict[str, Any], fence: str | None) -> None:
        async def body(conn: AsyncConnection, attempt: int) -> None:
            if fence is not None:
                await self._check_fence(conn, header["run_id"], fence)
            await conn.execute(self.upsert_run, header)
            if attempt and await self._stored_same(conn, checkpoint):
                return  # the first attempt committed; its answer was lost with the connection
            await conn.execute(self.insert_checkpoint, checkpoint)

        await self.transaction(body)

    async def end_run(self, header: dict[str, Any], checkpoint: dict[str, Any], fence: str | None,
                      release: str | None) -> None:
        """The last checkpoint, the header and (``release``: the lease token) the lease's release."""
        async def body(conn: AsyncConnection, attempt: int) -> None:
            if attempt and await self._stored_same(conn, checkpoint):
                return  # the first attempt committed (and gave the lease back); its answer was lost
            if fence is not None:
                await self._check_fence(conn, header["run_id"], fence)
            await conn.execute(self.insert_checkpoint, checkpoint)
            await conn.execute(self.upsert_run, header)
            if release is not None:
                await conn.execute(self.release, {"run_id": header["run_id"], "token": release})

        await self.transaction(body)

    async def _check_fence(self, conn: AsyncConnection, run_id: str, fence: str) -> None:
        token = (await conn.execute(self.select_token, {"run_id": run_id})).scalar()
        if token != fence:
            raise Fenced(run_id)

    async def _stored_same(self, conn: AsyncConnection, params: dict[str, Any]) -> bool:
        row = (await conn.execute(self.select_payload, {"run_id": params["run_id"], "seq": params["seq"]})).first()
        return row is not None and bytes(row[0]) == params["payload"]

    async def load(self, run_id: str) -> StoredRun | None:
        async def body(conn: AsyncConnection) -> StoredRun | None:
            row = (await conn.execute(self.select_header, {"run_id": run_id})).first()
            if row is None:
                return None
            rows = (await conn.execute(self.select_from_full, {"run_id": run_id})).all()
            return StoredRun(to_header(row), [to_checkpoint(r) for r in rows])

        return await self.read(body)

    async def list_runs(self, query: Any) -> list[RunHeader]:
        async def body(conn: AsyncConnection) -> list[RunHeader]:
            return [to_header(r) for r in (await conn.execute(query)).all()]

        return await self.read(body)

    async def prune(self, run_id: str, keep: int) -> int:
        # Reads first, outside any write lock; then one DELETE. Only the run's owner appends
        # (to higher seqs) and prunes, so what the reads found still holds for the DELETE.
        async def cutoff(conn: AsyncConnection) -> int | None:
            first = (await conn.execute(self.select_kept, {"run_id": run_id, "offset": keep - 1})).first()
            if first is None:
                return None
            first_seq, first_kind = first
            # A delta builds on every checkpoint back to its full one: delete only what lies
            # before the full checkpoint the oldest kept one builds on.
            if first_kind == "full":
                return int(first_seq)
            base = (await conn.execute(self.select_full_before, {"run_id": run_id, "before": first_seq})).scalar()
            return None if base is None else int(base)

        before = await self.read(cutoff)
        if before is None:
            return 0

        async def body(conn: AsyncConnection, attempt: int) -> int:
            result = await conn.execute(self.delete_before, {"run_id": run_id, "before": before})
            return int(result.rowcount or 0)

        return await self.transaction(body)

    async def claim_run(self, params: dict[str, Any]) -> Lease:
        async def body(conn: AsyncConnection, attempt: int) -> Lease:
            got = (await conn.execute(self.claim, params)).first()
            if got is not None:
                return lease_of_params(params)
            row = (await conn.execute(self.select_lease, {"run_id": params["run_id"]})).first()
            assert row is not None  # the conflicting lease is there: rows are only deleted by release
            return to_lease(row)

        return await self.transaction(body)

    async def renew_lease(self, params: dict[str, Any]) -> bool:
        count, _ = await self.execute_write(self.renew, params)
        return bool(count)

    async def release_run(self, params: dict[str, Any]) -> bool:
        count, _ = await self.execute_write(self.release, params)
        return bool(count)

    async def get_lease(self, run_id: str) -> Lease | None:
        async def body(conn: AsyncConnection) -> Lease | None:
            row = (await conn.execute(self.select_lease, {"run_id": run_id})).first()
            return None if row is None else to_lease(row)

        return await self.read(body)

    async def list_leases(self, query: Any) -> list[Lease]:
        async def body(conn: AsyncConnection) -> list[Lease]:
            return [to_lease(r) for r in (await conn.execute(query)).all()]

        return await self.read(body)


    async def ask_interrupt(self, params: dict[str, Any], fence: str | None) -> InterruptRecord:
        async def body(conn: AsyncConnection, attempt: int) -> InterruptRecord:
            if fence is not None:
                await self._check_fence(conn, params["run_id"], fence)
            await conn.execute(self.insert_interrupt, params)
            row = (await conn.execute(self.select_interrupt_at, {
                k: params[k] for k in ("run_id", "task", "position", "level")})).first()
            assert row is not None  # inserted now, or there before: rows are never deleted
            return to_interrupt(row)

        return await self.transaction(body)

    async def resolve(self, params: dict[str, Any]) -> bool:
        async def already_done(conn: AsyncConnection) -> Any:
            # The first attempt committed but its answer was lost with the connection.
            row = (await conn.execute(self.select_interrupt, {"id": params["interrupt_id"]})).first()
            if row is None:
                return None
            m = row._mapping
            ours = (m["status"] == params["new_status"] and m["answered_at"] == params["new_answered_at"]
                    and m["answered_by"] == params["new_answered_by"])
            return (1, []) if ours else None

        count, _ = await self.execute_write(self.resolve_interrupt, params, already_done)
        return bool(count == 1)

    async def get_interrupt(self, interrupt_id: str) -> InterruptRecord | None:
        async def body(conn: AsyncConnection) -> InterruptRecord | None:
            row = (await conn.execute(self.select_interrupt, {"id": interrupt_id})).first()
            return None if row is None else to_interrupt(row)

        return await self.read(body)

    async def list_interrupts(self, query: Any) -> list[InterruptRecord]:
        async def body(conn: AsyncConnection) -> list[InterruptRecord]:
            return [to_interrupt(r) for r in (await conn.execute(query)).all()]

        return await self.read(body)


    async def request_cancel(self, params: dict[str, Any]) -> str | None:
        async def body(conn: AsyncConnection, attempt: int) -> str | None:
            run_id = params["run_id"]
            status = (await conn.execute(self.select_run_status, {"run_id": run_id})).scalar()
            if status is None:
                return None
            if status in ENDED_STATUSES:
                if attempt and status == "cancelled" and await self._cancelled_by(conn, params):
                    return "cancelled"  # the first attempt committed; its answer was lost
                return "finished"
            await conn.execute(self.insert_cancel, params)
            if (await conn.execute(self.select_live_lease, {"run_id": run_id, "now": params["requested_at"]})).first():
                return "requested"  # its owner acts on it at its next task boundary
            await conn.execute(self.mark_cancelled, {"cancel_run_id": run_id, "cancel_now": params["requested_at"]})
            return "cancelled"

        return await self.transaction(body)

    async def _cancelled_by(self, conn: AsyncConnection, params: dict[str, Any]) -> bool:
        row = (await conn.execute(self.select_cancel, {"run_id": params["run_id"]})).first()
        return row is not None and row._mapping["requested_at"] == params["requested_at"] \
            and row._mapping["reason"] == params["reason"]

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, str]:
        async def body(conn: AsyncConnection) -> dict[str, str]:
            rows = (await conn.execute(self.select_cancels, {"run_ids": self.list_param(run_ids)})).all()
            return {r[0]: r[1] for r in rows}

        return await self.read(body)

    async def get_breaker(self, name: str) -> BreakerRecord | None:
        async def body(conn: AsyncConnection) -> BreakerRecord | None:
            row = (await conn.execute(self.select_breaker, {"name": name})).first()
            return None if row is None else to_breaker(row)

        return await self.read(body)

    async def swap_breaker(self, params: dict[str, Any], expected: int) -> bool:
        async def ours(conn: AsyncConnection) -> Any:
            # The first attempt committed but its answer was lost with the connection.
            row = (await conn.execute(self.select_breaker, {"name": params["name"]})).first()
            return (1, []) if row is not None and dict(row._mapping) == params else None

        if expected == 0:
            count, _ = await self.execute_write(self.insert_breaker, params, ours)
        else:
            count, _ = await self.execute_write(
                self.update_breaker, {**params, "b_name": params["name"], "b_expected": expected}, ours)
        return bool(count == 1)


class Fenced(Exception):
    """A fenced write found the run's lease held by another claim (or by none)."""


async def _outcome(conn: AsyncConnection, statement: Any, params: dict[str, Any]) -> tuple[int, list[Any]]:
    result = await conn.execute(statement, params)
    rows = list(result.all()) if result.returns_rows else []
    return int(result.rowcount or 0), rows


def lease_of_params(params: dict[str, Any]) -> Lease:
    return Lease(params["run_id"], params["owner"], params["token"], float(params["now"]),
                 float(params["expires_at"]))


def to_lease(row: Row[Any]) -> Lease:
    m = row._mapping
    return Lease(m["run_id"], m["owner"], m["token"], float(m["claimed_at"]), float(m["expires_at"]))


def to_breaker(row: Row[Any]) -> BreakerRecord:
    return breaker_of(row._mapping)


def breaker_of(m: Any) -> BreakerRecord:
    """A breaker row (a mapping of its columns) as the kernel's record."""
    return BreakerRecord(
        name=m["name"], state=m["state"], generation=int(m["generation"]), failures=int(m["failures"]),
        opened_at=None if m["opened_at"] is None else float(m["opened_at"]), trials=int(m["trials"]),
        trials_ok=int(m["trials_ok"]),
        trial_deadline=None if m["trial_deadline"] is None else float(m["trial_deadline"]),
        times_opened=int(m["times_opened"]), updated_at=float(m["updated_at"]), version=int(m["version"]),
    )


def to_interrupt(row: Row[Any]) -> InterruptRecord:
    m = row._mapping
    return InterruptRecord(
        id=m["id"], run_id=m["run_id"], workflow=m["workflow"], task=m["task"], position=int(m["position"]),
        level=int(m["level"]), status=m["status"], asked_at=float(m["asked_at"]),
        deadline=None if m["deadline"] is None else float(m["deadline"]), payload=bytes(m["payload"]),
        answer=None if m["answer"] is None else bytes(m["answer"]), answered_by=m["answered_by"],
        answered_at=None if m["answered_at"] is None else float(m["answered_at"]),
    )


def to_header(row: Row[Any]) -> RunHeader:
    m = row._mapping
    return RunHeader(
        run_id=m["run_id"],
        workflow=m["workflow"],
        status=m["status"],
        started_at=float(m["started_at"]),
        finished_at=None if m["finished_at"] is None else float(m["finished_at"]),
        payload=_blob(m["payload"]),
    )


def to_checkpoint(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        run_id=m["run_id"],
        seq=int(m["seq"]),
        kind=m["kind"],
        payload=_blob(m["payload"]),
        created_at=float(m["created_at"]),
    )


def _blob(value: Any) -> bytes:
    """A payload column as bytes. SQLite keeps whatever a hand-made UPDATE put in a BLOB
    column, text included: that is handed on as its bytes, for the kernel to refuse as a
    damaged payload, rather than failing the whole query (and every run listed with it)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


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
        # Shared by every store opening this database now: one opener being cancelled (a run
        # cancelled, a timeout) must not cancel the start the others wait for.
        await wait_future(backend.ready, shared=True)
        if backend.ready_checked:
            try:
                await backend.check_schema()
            except PyAgentError:  # SchemaVersionError, StoreUnavailableError: already say it all
                raise
            except Exception as exc:  # the server went away since the backend started
                raise backend.unavailable(exc) from None
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
