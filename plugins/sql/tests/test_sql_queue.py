"""The run queue on the store: ``dequeue_runs``, ``request_cancel`` and ``cancel_requests``.

The semantics are checked against every store that has them (the kernel's memory store too);
the SQL specifics (locking across processes, wrapped errors, the version 4
migration) against real SQLite files and a real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from pyagent_sql import schema
from pyagent_sql.urls import parse_sqlite

from pyagent import StoreError
from pyagent.durability.store import RunHeader
from pyagent.plugin import Claim

pytestmark = pytest.mark.anyio

NOW = 1_000_000.0


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://queue-{uuid.uuid4().hex}"
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def run(run_id: str, workflow: str = "wf", status: str = "pending", started: float = 100.0) -> RunHeader:
    return RunHeader(run_id, workflow, status, started, None, f"input of {run_id}".encode())


async def dequeue(store: Any, owner: str = "replica-1", *, now: float = NOW, ttl: float = 30.0, limit: int = 10,
                  workflows: dict[str, int | None] | None = None) -> list[Claim]:
    return list(await store.dequeue_runs(owner, now=now, ttl=ttl, limit=limit,
                                         workflows={"wf": None} if workflows is None else workflows))


def ids(claims: list[Claim]) -> list[str]:
    return [c.header.run_id for c in claims]


# -- dequeue_runs ----------------------------------------------------------------------------------


async def test_ready_runs_are_claimed_oldest_first_each_with_a_fresh_lease(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for run_id, started in [("c", 300.0), ("a", 100.0), ("e", 500.0), ("b2", 200.0), ("b1", 200.0)]:
            await store.create_run(run(run_id, started=started))
        got = await dequeue(store, limit=3, ttl=45.0)
        assert ids(got) == ["a", "b1", "b2"]  # started_at, then run id
        for claim in got:
            assert claim.header == run(claim.header.run_id, started=claim.header.started_at)
            assert claim.lease.run_id == claim.header.run_id and claim.lease.owner == "replica-1"
            assert (claim.lease.claimed_at, claim.lease.expires_at) == (NOW, NOW + 45.0)
            assert len(claim.lease.token) == 32 and int(claim.lease.token, 16) >= 0
            assert await store.get_lease(claim.header.run_id) == claim.lease
        assert len({c.lease.token for c in got}) == 3
        assert ids(await dequeue(store, "replica-2")) == ["c", "e"]
        assert await dequeue(store, "replica-3") == []


async def test_only_queued_runs_and_orphans_of_the_workflows_served_are_ready(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for status in ("completed", "failed", "cancelled", "skipped", "waiting"):
            await store.create_run(run(status, status=status, started=1.0))
        await store.create_run(run("other-workflow", workflow="other", started=1.0))
        await store.create_run(run("queued", started=5.0))
        await store.create_run(run("orphan-no-lease", status="running", started=4.0))
        await store.create_run(run("orphan-expired", status="running", started=3.0))
        await store.claim_run("orphan-expired", "dead-replica", "t-dead", now=NOW - 100, ttl=10.0)
        await store.create_run(run("owned", status="running", started=2.0))
        owned = await store.claim_run("owned", "live-replica", "t-live", now=NOW - 1, ttl=10.0)
        await store.create_run(run("queued-but-leased", started=2.5))
        await store.claim_run("queued-but-leased", "live-replica", "t-live-2", now=NOW, ttl=10.0)
        await store.create_run(run("cancel-asked", status="running", started=2.0))
        await store.claim_run("cancel-asked", "live-replica", "t-live-3", now=NOW - 5, ttl=6.0)
        assert await store.request_cancel("cancel-asked", reason="stop", now=NOW - 2) == "requested"

        got = await dequeue(store)  # at NOW the lease of cancel-asked has expired: still not ready
        assert ids(got) == ["orphan-expired", "orphan-no-lease", "queued"]
        assert {c.header.run_id: c.header.status for c in got}["orphan-expired"] == "running"
        assert (await store.get_lease("owned")) == owned
        lease = await store.get_lease("orphan-expired")
        assert lease is not None and lease.owner == "replica-1" and lease.token != "t-dead"


async def test_a_claimed_run_is_ready_again_once_released_or_expired(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.create_run(run("r1"))
        [first] = await dequeue(store, ttl=10.0)
        assert await dequeue(store, now=NOW + 9.9) == []
        [second] = await dequeue(store, "replica-2", now=NOW + 10.0)  # expires_at <= now: expired
        assert second.lease.token != first.lease.token and second.lease.owner == "replica-2"
        assert not await store.release_run("r1", first.lease.token)  # the first claim lost it
        assert await store.release_run("r1", second.lease.token)
        [third] = await dequeue(store, "replica-3", now=NOW + 10.0)
        assert third.lease.owner == "replica-3"


async def test_max_active_counts_every_live_lease_of_the_workflow_and_the_ones_claimed(url: str, opened: Any) -> None:
    async with opened(url) as store:
        # Two runs of "bounded" hold live leases already: one started directly (not from the
        # queue), one that completed but has not released its lease yet.
        await store.create_run(run("direct", workflow="bounded", status="running", started=1.0))
        await store.claim_run("direct", "elsewhere", "t1", now=NOW, ttl=60.0)
        await store.create_run(run("ending", workflow="bounded", status="completed", started=1.0))
        await store.claim_run("ending", "elsewhere", "t2", now=NOW, ttl=60.0)
        await store.create_run(run("expired", workflow="bounded", status="completed", started=1.0))
        await store.claim_run("expired", "elsewhere", "t3", now=NOW - 100, ttl=60.0)  # does not count
        for i in range(6):
            await store.create_run(run(f"b{i}", workflow="bounded", started=10.0 + i))
        for i in range(6):
            await store.create_run(run(f"f{i}", workflow="free", started=20.0 + i))

        served = {"bounded": 4, "free": None}
        got = await dequeue(store, limit=5, workflows=served)
        # The two oldest bounded runs fill its room; the rest of the batch goes to "free".
        assert ids(got) == ["b0", "b1", "f0", "f1", "f2"]
        assert ids(await dequeue(store, limit=5, workflows=served)) == ["f3", "f4", "f5"]
        assert await dequeue(store, limit=5, workflows={"bounded": 4}) == []
        await store.save_run(run("direct", workflow="bounded", status="completed", started=1.0), fence="t1")
        assert await store.release_run("direct", "t1")  # it ended: room for one more
        assert ids(await dequeue(store, limit=5, workflows=served)) == ["b2"]
        assert ids(await dequeue(store, limit=5, workflows={"bounded": None})) == ["b3", "b4", "b5"]


async def test_several_bounded_workflows_share_a_batch_oldest_first(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for i in range(4):
            await store.create_run(run(f"a{i}", workflow="a", started=float(i)))  # 0 1 2 3
            await store.create_run(run(f"b{i}", workflow="b", started=i + 0.5))  # .5 1.5 2.5 3.5
            await store.create_run(run(f"c{i}", workflow="c", started=i + 10.0))
        got = await dequeue(store, limit=6, workflows={"a": 1, "b": 2, "c": 2})
        assert ids(got) == ["a0", "b0", "b1", "c0", "c1"]
        assert await dequeue(store, limit=6, workflows={"a": 1, "b": 2, "c": 2}) == []


async def test_nothing_is_claimed_for_a_limit_below_one_or_no_workflows(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.create_run(run("r1"))
        assert await dequeue(store, limit=0) == []
        assert await dequeue(store, limit=-3) == []
        assert await dequeue(store, workflows={}) == []
        assert await store.get_lease("r1") is None
        assert ids(await dequeue(store, limit=1)) == ["r1"]


# -- request_cancel and cancel_requests -------------------------------------------------------------


async def test_a_run_without_a_live_lease_is_cancelled_at_once(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for run_id, status in [("queued", "pending"), ("orphan", "running"), ("asking", "waiting")]:
            await store.create_run(run(run_id, status=status))
        await store.claim_run("orphan", "dead-replica", "t-dead", now=NOW - 100, ttl=10.0)
        for run_id in ("queued", "orphan", "asking"):
            assert await store.request_cancel(run_id, reason=f"no longer needed: {run_id}", now=NOW) == "cancelled"
            loaded = await store.load(run_id)
            assert loaded is not None
            assert loaded.header == RunHeader(run_id, "wf", "cancelled", 100.0, NOW, f"input of {run_id}".encode())
        assert await store.cancel_requests(["queued", "orphan", "asking", "unknown"]) == {
            "queued": "no longer needed: queued", "orphan": "no longer needed: orphan",
            "asking": "no longer needed: asking"}
        assert await dequeue(store, workflows={"wf": None}) == []
        # Asking again changes nothing: the run has ended, and the first request stays.
        assert await store.request_cancel("queued", reason="again", now=NOW + 5) == "finished"
        assert await store.cancel_requests(["queued"]) == {"queued": "no longer needed: queued"}


async def test_a_run_with_a_live_lease_gets_a_request_its_owner_acts_on(url: str, opened: Any) -> None:
    async with opened(url) as store:
        await store.create_run(run("r1", status="running"))
        lease = await store.claim_run("r1", "owner", "t1", now=NOW, ttl=10.0)
        assert await store.request_cancel("r1", reason="user asked", now=NOW + 1) == "requested"
        assert await store.request_cancel("r1", reason="asked twice", now=NOW + 2) == "requested"
        loaded = await store.load("r1")
        assert loaded is not None and (loaded.header.status, loaded.header.finished_at) == ("running", None)
        assert await store.get_lease("r1") == lease
        assert await store.cancel_requests(["r1"]) == {"r1": "user asked"}
        # The owner died: its orphan is not resumed by the queue; asking again ends it.
        assert await dequeue(store, now=NOW + 20) == []
        assert await store.request_cancel("r1", reason="third", now=NOW + 20) == "cancelled"
        loaded = await store.load("r1")
        assert loaded is not None and (loaded.header.status, loaded.header.finished_at) == ("cancelled", NOW + 20)
        assert await store.cancel_requests(["r1"]) == {"r1": "user asked"}


async def test_ended_and_unknown_runs_are_left_alone(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for status in ("completed", "failed", "cancelled", "skipped"):
            await store.create_run(run(status, status=status))
            assert await store.request_cancel(status, reason="late", now=NOW) == "finished"
            loaded = await store.load(status)
            assert loaded is not None and loaded.header == run(status, status=status)
        assert await store.request_cancel("no-such-run", reason="?", now=NOW) is None
        assert await store.cancel_requests(["completed", "failed", "cancelled", "skipped", "no-such-run"]) == {}
        assert await store.cancel_requests([]) == {}


async def test_cancel_requests_reads_many_runs_at_once(url: str, opened: Any) -> None:
    async with opened(url) as store:
        for i in range(40):
            await store.create_run(run(f"r{i:02}"))
        for i in range(0, 40, 3):
            assert await store.request_cancel(f"r{i:02}", reason=f"reason {i}", now=NOW) == "cancelled"
        asked = [f"r{i:02}" for i in range(40)] + [f"missing-{i}" for i in range(5000)] + ["r00"]
        assert await store.cancel_requests(asked) == {f"r{i:02}": f"reason {i}" for i in range(0, 40, 3)}


# -- SQL specifics ---------------------------------------------------------------------------------


async def test_dequeue_refuses_a_ttl_or_max_active_that_makes_no_sense(sql_url: str, opened: Any) -> None:
    async with opened(sql_url) as store:
        with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
            await dequeue(store, ttl=0)
        with pytest.raises(ValueError, match="max_active for workflow 'wf' must be a whole number or None"):
            await dequeue(store, workflows={"wf": 2.5})  # type: ignore[dict-item]


@pytest.mark.parametrize("table", ["pyagent_leases", "pyagent_cancels"])
async def test_store_errors_are_wrapped_and_carry_no_parameters(
        sql_url: str, db_query: Any, table: str, opened: Any) -> None:
    marker = f"SECRET-{uuid.uuid4().hex}"
    async with opened(sql_url) as store:
        await store.create_run(run("r1"))
        if sql_url.startswith("sqlite"):
            db_query(sql_url, f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                              "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END")
        else:
            db_query(sql_url, "CREATE FUNCTION refuse() RETURNS trigger AS $$ "
                              "BEGIN RAISE EXCEPTION 'refused by policy'; END $$ LANGUAGE plpgsql")
            db_query(sql_url, f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")
        if table == "pyagent_leases":
            with pytest.raises(StoreError) as info:
                await dequeue(store, marker)
            assert "taking runs off the queue" in str(info.value)
        else:
            with pytest.raises(StoreError) as info:
                await store.request_cancel("r1", reason=marker, now=NOW)
            assert "requesting the cancellation of run 'r1'" in str(info.value)
        message = str(info.value)
        assert "refused by policy" in message and store.display_url in message
        assert marker not in message and "[parameters" not in message
        # Nothing was half done.
        assert db_query(sql_url, "SELECT count(*) FROM pyagent_leases") == [(0,)]
        assert db_query(sql_url, "SELECT status FROM pyagent_runs") == [("pending",)]


async def test_a_version_3_database_gets_the_queue_and_keeps_its_runs(
    sql_url: str, db_query: Any, monkeypatch: pytest.MonkeyPatch, opened: Any
) -> None:
    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", 3)
        async with opened(sql_url) as store:
            await store.create_run(run("queued", started=2.0))
            await store.create_run(run("orphan", status="running", started=1.0))
            await store.claim_run("orphan", "dead-replica", "t-dead", now=NOW - 100, ttl=10.0)
            await store.create_run(run("done", status="completed", started=0.5))
    assert db_query(sql_url, "SELECT max(version) FROM pyagent_schema_version") == [(3,)]
    await forget_backends()
    async with opened(sql_url) as store:
        assert ids(await dequeue(store)) == ["orphan", "queued"]
        assert await store.request_cancel("done", reason="late", now=NOW) == "finished"
    assert db_query(sql_url, "SELECT version, description FROM pyagent_schema_version WHERE version = 4") == [
        (4, "run queue: cancel requests")]
    if sql_url.startswith("sqlite"):
        indexes = db_query(sql_url, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pyagent_runs'")
    else:
        indexes = db_query(sql_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'pyagent_runs' "
                                    "AND schemaname = current_schema()")
    assert ("ix_pyagent_runs_ready",) in indexes
    assert db_query(sql_url, "SELECT count(*) FROM pyagent_cancels") == [(0,)]


@pytest.mark.parametrize("bound", [None, 5], ids=["unbounded", "bounded"])
async def test_postgres_a_dequeue_retried_after_its_commit_went_unanswered_returns_those_claims(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, db_query: Any, bound: int | None, opened: Any) -> None:
    """The connection drops after COMMIT reached the server: the retry finds the leases taken."""
    from pyagent_sql.postgres import PostgresBackend

    first: list[Any] = []
    real_write = PostgresBackend.execute_write

    async def write_committed_then_lost(self: PostgresBackend, statement: Any, params: Any,
                                        on_retry: Any = None) -> Any:
        first.append(await real_write(self, statement, params))  # one statement, autocommitted
        async with self.writer().connect() as conn:  # what a retry on a fresh connection does first
            found = await on_retry(conn)
        assert found is not None
        return found

    async def transaction_committed_then_lost(self: PostgresBackend, body: Any) -> Any:
        async with self.transaction_engine().begin() as conn:
            first.append(await body(conn, 0))
        async with self.transaction_engine().begin() as conn:
            return await body(conn, 1)

    async with opened(pg_url) as store:
        for i in range(5):
            await store.create_run(run(f"r{i}", started=float(i)))
        if bound is None:
            monkeypatch.setattr(PostgresBackend, "execute_write", write_committed_then_lost)
        else:
            monkeypatch.setattr(PostgresBackend, "transaction", transaction_committed_then_lost)
        got = await dequeue(store, limit=3, workflows={"wf": bound})
        monkeypatch.undo()
        assert len(first) == 1 and ids(got) == ["r0", "r1", "r2"]
        for claim in got:
            assert await store.get_lease(claim.header.run_id) == claim.lease
        assert ids(await dequeue(store, "replica-2", workflows={"wf": bound})) == ["r3", "r4"]
    assert db_query(pg_url, "SELECT count(*) FROM pyagent_leases") == [(5,)]


async def test_postgres_a_cancel_retried_after_its_commit_went_unanswered_still_says_cancelled(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, opened: Any) -> None:
    from pyagent_sql.postgres import PostgresBackend

    async def committed_then_lost(self: PostgresBackend, body: Any) -> Any:
        async with self.transaction_engine().begin() as conn:
            await body(conn, 0)
        async with self.transaction_engine().begin() as conn:
            return await body(conn, 1)

    async with opened(pg_url) as store:
        await store.create_run(run("r1"))
        await store.create_run(run("r2", status="cancelled"))
        monkeypatch.setattr(PostgresBackend, "transaction", committed_then_lost)
        assert await store.request_cancel("r1", reason="stop", now=NOW) == "cancelled"
        assert await store.request_cancel("r2", reason="stop", now=NOW) == "finished"


async def forget_backends() -> None:
    """Start over as a new process would: no connections or schema checks kept from before."""
    from pyagent_sql.backend import dispose_all

    await anyio.to_thread.run_sync(dispose_all)


async def test_sqlite_dequeue_waits_for_another_writer_and_then_claims(sqlite_url: str, opened: Any) -> None:
    async with opened(sqlite_url) as store:
        await store.create_run(run("r1"))
        blocker = sqlite3.connect(parse_sqlite(sqlite_url).path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    got: list[Claim] = []

                    async def take() -> None:
                        got.extend(await dequeue(store))

                    tg.start_soon(take)
                    await anyio.sleep(0.2)
                    assert got == []  # parked behind the other writer, the event loop free
                    blocker.execute("COMMIT")
        finally:
            blocker.close()
        assert ids(got) == ["r1"]


# -- many processes at once --------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, dataclasses, json, sys, time
    from pyagent.plugins import get_runtime

    async def main(url, owner, out, hold, batch, concurrency):
        store = get_runtime().driver("stores", url.split("://", 1)[0])(url)
        served = {"bounded": 5, "free": None}
        taken, errors, in_flight = [], [], set()

        async def finish(claim, got_at):
            try:
                await asyncio.sleep(hold)
                done_at = time.time()
                header = dataclasses.replace(claim.header, status="completed", finished_at=done_at)
                await store.save_run(header, fence=claim.lease.token)
                if not await store.release_run(claim.header.run_id, claim.lease.token):
                    errors.append(f"lost the lease of {claim.header.run_id}")
                taken.append([claim.header.run_id, claim.header.workflow, claim.header.status, got_at, done_at])
            except Exception as exc:
                errors.append(f"{claim.header.run_id}: {exc!r}")

        async with store:
            idle_since = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                room = concurrency - len(in_flight)
                claims = []
                if room > 0:
                    claims = await store.dequeue_runs(owner, now=time.time(), ttl=30.0,
                                                      limit=min(room, batch), workflows=served)
                    got_at = time.time()
                    for claim in claims:
                        task = asyncio.ensure_future(finish(claim, got_at))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                if claims or in_flight:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 1.5:
                    break  # the queue stayed empty
                await asyncio.sleep(0.002 if claims else 0.01)
            if in_flight:
                await asyncio.wait(list(in_flight))
        with open(out, "w") as f:
            json.dump({"taken": taken, "errors": errors}, f)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])))
    """
)


class LiveLeases:
    """Counts live leases straight from the database (of the bounded workflow's runs, or all)."""

    SQL = ("SELECT count(*) FROM pyagent_leases l JOIN pyagent_runs r ON r.run_id = l.run_id "
           "WHERE r.workflow LIKE {} AND l.expires_at > {}")

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(parse_sqlite(url).path, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 10000")
            return
        from urllib.parse import parse_qs, urlsplit

        import asyncpg

        # asyncpg on a loop of its own, in a thread of its own: the test's loop is running.
        self.thread = concurrent.futures.ThreadPoolExecutor(1)
        self.loop = asyncio.new_event_loop()
        schema_name = parse_qs(urlsplit(url).query)["schema"][0]
        self.conn = self._pg(asyncpg.connect(url.split("?", 1)[0], server_settings={"search_path": schema_name}))

    def _pg(self, coro: Any) -> Any:
        return self.thread.submit(self.loop.run_until_complete, coro).result(30)

    def count(self, workflow: str = "bounded") -> int:
        if self.url.startswith("sqlite"):
            return int(self.conn.execute(self.SQL.format("?", "?"), (workflow, time.time())).fetchone()[0])
        return int(self._pg(self.conn.fetchval(self.SQL.format("$1", "$2"), workflow, time.time())))

    def close(self) -> None:
        if self.url.startswith("sqlite"):
            self.conn.close()
            return
        self._pg(self.conn.close())
        self.thread.submit(self.loop.close).result(30)
        self.thread.shutdown()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = level = 0
    for _, step in edges:
        level += step
        most = max(most, level)
    return most


def test_processes_dequeuing_at_once_claim_every_run_exactly_once_within_max_active(
        sql_url: str, tmp_path: Path, opened: Any) -> None:
    """Three processes take runs off one queue while more are queued and some are cancelled."""

    async def seed() -> None:
        async with opened(sql_url) as store:
            for i in range(120):
                await store.create_run(run(f"bounded-{i:03}", workflow="bounded", started=time.time()))
                await store.create_run(run(f"free-{i:03}", workflow="free", started=time.time()))
            for i in range(10):  # their owners died: the queue resumes them
                await store.create_run(run(f"orphan-{i}", workflow="free", status="running", started=time.time()))
                await store.claim_run(f"orphan-{i}", "dead", f"t-dead-{i}", now=time.time() - 100, ttl=10.0)
            for i in range(10):  # cancelled before anyone served them
                await store.create_run(run(f"cancelled-{i}", workflow="bounded", started=0.0))
                assert await store.request_cancel(f"cancelled-{i}", reason="not wanted", now=time.time()) == "cancelled"
            await store.create_run(run("other-workflow", workflow="other", started=0.0))

    async def more_while_they_run(live: LiveLeases, samples: list[int], workers: list[Any]) -> dict[str, str | None]:
        answers: dict[str, str | None] = {}
        async with opened(sql_url) as store:
            with anyio.fail_after(60):  # the processes have started taking runs
                while live.count("%") == 0:
                    await asyncio.sleep(0.01)
            for i in range(60):
                await store.create_run(run(f"late-{i:03}", workflow="bounded" if i % 2 else "free",
                                           started=time.time()))
                if i % 6 == 0:  # cancel a queued run: either taken already, or never taken
                    target = f"free-{119 - i:03}"
                    answers[target] = await store.request_cancel(target, reason="changed my mind", now=time.time())
                samples.append(live.count())
                await asyncio.sleep(0.005)
            while any(w.poll() is None for w in workers):
                samples.append(live.count())
                await asyncio.sleep(0.005)
        return answers

    asyncio.run(seed())
    outs = [tmp_path / f"worker-{i}.json" for i in range(3)]
    # One replica takes a run at a time: it contends hardest with the others for the oldest run.
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, sql_url, f"replica-{i}", str(out), "0.01",
                                 "1" if i == 1 else "4", "4"], stderr=subprocess.PIPE)
               for i, out in enumerate(outs)]
    live = LiveLeases(sql_url)
    samples: list[int] = []
    try:
        answers = asyncio.run(asyncio.wait_for(more_while_they_run(live, samples, workers), 120))
    finally:
        live.close()
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w in workers:
        _, err = w.communicate(timeout=30)
        assert w.returncode == 0, err.decode()

    results = [json.loads(out.read_text()) for out in outs]
    assert [r["errors"] for r in results] == [[], [], []]
    taken = [t for r in results for t in r["taken"]]
    claimed = [t[0] for t in taken]
    assert len(claimed) == len(set(claimed))  # never claimed twice
    cancelled_now = {run_id for run_id, answer in answers.items() if answer == "cancelled"}
    assert answers and set(answers.values()) <= {"cancelled", "requested", "finished"}
    expected = ({f"bounded-{i:03}" for i in range(120)} | {f"free-{i:03}" for i in range(120)}
                | {f"late-{i:03}" for i in range(60)} | {f"orphan-{i}" for i in range(10)}) - cancelled_now
    assert set(claimed) == expected  # every queued run and orphan, no cancelled one, nothing else
    assert all(status == "running" for run_id, _, status, *_ in taken if run_id.startswith("orphan"))
    assert all(len(r["taken"]) > 20 for r in results)  # all three took part

    # Never more than 5 live leases of the bounded workflow: as sampled in the database, and
    # from the times each run was certainly held (from the claim's return to its completion).
    assert samples and max(samples) <= 5
    held = [(got_at, done_at) for _, workflow, _, got_at, done_at in taken if workflow == "bounded"]
    assert max_overlap(held) <= 5
    assert max(samples) >= 3  # the bound was reached, not merely never approached
