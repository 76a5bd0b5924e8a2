"""Schema versioning on SQLite and PostgreSQL: created once, migrated forward, newer refused."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import pytest
from pyagent_sql import CheckpointConflictError, SchemaVersionError, schema
from sqlalchemy import Connection, text

from pyagent.durability.store import Checkpoint, RunHeader

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def test_the_schema_is_created_on_first_open_and_recorded_once(url: str, db_query: Any, make_store: Any) -> None:
    stores = [make_store(url) for _ in range(5)]
    try:
        async with anyio.create_task_group() as tg:  # several processes starting together
            for store in stores:
                tg.start_soon(store.open)
    finally:
        for store in stores:
            await store.close()
    assert db_query(url, "SELECT version, description FROM pyagent_schema_version ORDER BY version") == [
        (1, "runs and checkpoints tables"), (2, "run leases (one owner per run)"),
        (3, "interrupts (questions runs ask people, and their answers)"), (4, "run queue: cancel requests"),
        (5, "shared circuit breakers (one row per workflow)"),
    ]
    assert db_query(url, "SELECT count(*) FROM pyagent_runs") == [(0,)]


async def test_a_database_from_a_newer_version_is_refused_and_left_unchanged(
        url: str, db_query: Any, make_store: Any) -> None:
    async with make_store(url) as store:
        await store.save_run(RunHeader("r1", "wf", "completed", 1.0))
    db_query(url, "INSERT INTO pyagent_schema_version VALUES (7, 0, 'from the future')")

    store = make_store(url)
    with pytest.raises(SchemaVersionError) as info:
        await store.open()
    message = str(info.value)
    assert "version 7" in message and f"up to {schema.LATEST}" in message and "pip install -U pyagent-sql" in message
    assert db_query(url, "SELECT max(version) FROM pyagent_schema_version") == [(7,)]
    assert db_query(url, "SELECT run_id, status FROM pyagent_runs") == [("r1", "completed")]


async def test_an_older_database_is_migrated_forward_keeping_its_data(
    url: str, db_query: Any, monkeypatch: pytest.MonkeyPatch, make_store: Any
) -> None:
    async with make_store(url) as store:
        await store.save_run(RunHeader("r1", "wf", "completed", 1.0))
        await store.append_checkpoint(Checkpoint("r1", 0, "full", b"state", 1.0))

    def to_next(conn: Connection) -> None:
        where = conn.schema_for_object(schema.define_tables().runs)  # the store's schema, if any
        prefix = f'"{where}".' if where else ""
        conn.execute(text(f"ALTER TABLE {prefix}pyagent_runs ADD COLUMN note TEXT"))

    latest = schema.LATEST
    monkeypatch.setattr(schema, "LATEST", latest + 1)
    monkeypatch.setitem(schema.MIGRATIONS, latest + 1, ("runs get a note", to_next))
    async with make_store(url) as store:
        loaded = await store.load("r1")
    assert loaded is not None and loaded.checkpoints[0].payload == b"state"
    assert db_query(url, "SELECT version FROM pyagent_schema_version ORDER BY version") == [
        (v,) for v in range(1, latest + 2)]
    assert db_query(url, "SELECT run_id, note FROM pyagent_runs") == [("r1", None)]


async def test_a_version_1_database_gets_the_lease_table_and_keeps_its_runs(
    url: str, db_query: Any, monkeypatch: pytest.MonkeyPatch, make_store: Any
) -> None:
    """Databases written before run ownership existed are upgraded in place on first open."""
    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", 1)
        async with make_store(url) as store:
            await store.save_run(RunHeader("r1", "wf", "running", 1.0))
            await store.append_checkpoint(Checkpoint("r1", 0, "full", b"state", 1.0))
    assert db_query(url, "SELECT max(version) FROM pyagent_schema_version") == [(1,)]
    await _forget_backends()
    async with make_store(url) as store:
        lease = await store.claim_run("r1", "me", "t1", now=10.0, ttl=5.0)
        loaded = await store.load("r1")
    assert lease.token == "t1" and lease.expires_at == 15.0
    assert loaded is not None and loaded.checkpoints[0].payload == b"state"
    assert db_query(url, "SELECT version FROM pyagent_schema_version ORDER BY version") == [
        (v,) for v in range(1, schema.LATEST + 1)]  # brought up to the latest version at once
    assert db_query(url, "SELECT run_id, owner, token FROM pyagent_leases") == [("r1", "me", "t1")]


async def test_a_version_2_database_gets_the_interrupts_table_and_keeps_its_runs_and_leases(
    url: str, db_query: Any, monkeypatch: pytest.MonkeyPatch, make_store: Any
) -> None:
    """Databases written before runs could ask people questions are upgraded in place on first open."""
    from pyagent.durability.store import InterruptRecord

    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", 2)
        async with make_store(url) as store:
            await store.save_run(RunHeader("r1", "wf", "running", 1.0))
            await store.append_checkpoint(Checkpoint("r1", 0, "full", b"state", 1.0))
            await store.claim_run("r1", "me", "t1", now=10.0, ttl=5.0)
    assert db_query(url, "SELECT max(version) FROM pyagent_schema_version") == [(2,)]
    await _forget_backends()
    question = InterruptRecord(id="q" * 32, run_id="r1", workflow="wf", task="Approve", position=0, level=0,
                               status="pending", asked_at=11.0, deadline=None, payload=b"question")
    async with make_store(url) as store:
        assert (await store.ask_interrupt(question, fence="t1")) == question
        assert await store.resolve_interrupt("q" * 32, status="answered", answer=b"yes", answered_by="al",
                                             answered_at=12.0)
        loaded = await store.load("r1")
        lease = await store.get_lease("r1")
    assert loaded is not None and loaded.checkpoints[0].payload == b"state"
    assert lease is not None and lease.token == "t1"
    assert db_query(url, "SELECT version FROM pyagent_schema_version ORDER BY version") == [
        (v,) for v in range(1, schema.LATEST + 1)]  # brought up to the latest version at once
    assert db_query(url, "SELECT id, status, answered_by FROM pyagent_interrupts") == [("q" * 32, "answered", "al")]


async def test_a_version_4_database_gets_the_breakers_table_and_keeps_its_runs_and_leases(
    url: str, db_query: Any, monkeypatch: pytest.MonkeyPatch, make_store: Any
) -> None:
    """Databases written before circuit breakers could be shared are upgraded in place on first open."""
    from pyagent.durability.store import BreakerRecord

    with monkeypatch.context() as old:
        old.setattr(schema, "LATEST", 4)
        async with make_store(url) as store:
            await store.save_run(RunHeader("r1", "wf", "running", 1.0))
            await store.append_checkpoint(Checkpoint("r1", 0, "full", b"state", 1.0))
            await store.claim_run("r1", "me", "t1", now=10.0, ttl=5.0)
    assert db_query(url, "SELECT max(version) FROM pyagent_schema_version") == [(4,)]
    await _forget_backends()
    record = BreakerRecord(name="wf", state="open", generation=1, failures=3, opened_at=11.0, trials=0,
                           trials_ok=0, trial_deadline=None, times_opened=1, updated_at=11.0, version=1)
    async with make_store(url) as store:
        assert await store.swap_breaker(record, expected=0)
        assert await store.get_breaker("wf") == record
        loaded = await store.load("r1")
        lease = await store.get_lease("r1")
    assert loaded is not None and loaded.checkpoints[0].payload == b"state"
    assert lease is not None and lease.token == "t1"
    assert db_query(url, "SELECT max(version) FROM pyagent_schema_version") == [(5,)]
    assert db_query(url, "SELECT name, state, failures, version FROM pyagent_breakers") == [("wf", "open", 3, 1)]


async def _forget_backends() -> None:
    """Start over as a new process would: no connections or schema checks kept from before."""
    from pyagent_sql.backend import dispose_all

    await anyio.to_thread.run_sync(dispose_all)


async def test_a_repeated_checkpoint_seq_is_a_clear_error_and_keeps_the_first(url: str, make_store: Any) -> None:
    async with make_store(url) as store:
        await store.append_checkpoint(Checkpoint("r1", 0, "full", b"first", 1.0))
        with pytest.raises(CheckpointConflictError, match="checkpoint 0 of run 'r1' is already stored"):
            await store.append_checkpoint(Checkpoint("r1", 0, "full", b"second", 2.0))
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
        loaded = await store.load("r1")
    assert loaded is not None and [c.payload for c in loaded.checkpoints] == [b"first"]


async def test_an_unknown_checkpoint_kind_is_refused(url: str, make_store: Any) -> None:
    async with make_store(url) as store:
        with pytest.raises(ValueError, match="'full' or 'delta'"):
            await store.append_checkpoint(Checkpoint("r1", 0, "partial", b"x", 1.0))


async def test_prune_needs_a_positive_count(url: str, make_store: Any) -> None:
    async with make_store(url) as store:
        with pytest.raises(ValueError, match="keep must be a whole number >= 1"):
            await store.prune("r1", 0)
