"""PostgreSQL specifics on a real server: unreachable servers, missing databases, schemas."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pyagent_sql import StoreUnavailableError

from pyagent.durability.store import Checkpoint, RunHeader
from pyagent.plugins import get_runtime

pytestmark = pytest.mark.anyio


def postgres(url: str) -> Any:
    return get_runtime().driver("stores", url.split("://", 1)[0])(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    port = free_port()  # nothing listens there once the socket is closed
    store = postgres(f"postgresql://app:s3cret@127.0.0.1:{port}/orders?connect_timeout=5")
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    message = str(info.value)
    assert "s3cret" not in message
    assert f"postgresql://app:***@127.0.0.1:{port}/orders" in message
    assert f"host 127.0.0.1 port {port}" in message and "database 'orders'" in message
    assert "could not be reached" in message and f"pg_isready -h 127.0.0.1 -p {port}" in message


async def test_the_postgres_alias_scheme_reaches_the_same_server(pg_url: str) -> None:
    alias = "postgres://" + pg_url.split("://", 1)[1]
    async with postgres(alias) as store:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
    async with postgres(pg_url) as store:
        assert [h.run_id for h in await store.list_runs()] == ["r1"]


async def test_a_missing_database_is_named_in_the_error(pg_base_url: str) -> None:
    parts = urlsplit(pg_base_url)
    url = urlunsplit(parts._replace(path="/pyagent_no_such_database", query=""))
    with pytest.raises(StoreUnavailableError, match="database does not exist") as info:
        await postgres(url).open()
    assert "pyagent_no_such_database" in str(info.value)


async def test_schemas_keep_stores_apart(pg_url: str, pg_base_url: str, db_query: Any) -> None:
    other = pg_url.rsplit("=", 1)[0] + "=" + pg_url.rsplit("=", 1)[1] + "_b"
    try:
        async with postgres(pg_url) as a, postgres(other) as b:
            await a.save_run(RunHeader("only-in-a", "wf", "running", 1.0))
            await a.append_checkpoint(Checkpoint("only-in-a", 0, "full", b"a", 1.0))
            await b.save_run(RunHeader("only-in-b", "wf", "running", 1.0))
            assert [h.run_id for h in await a.list_runs()] == ["only-in-a"]
            assert [h.run_id for h in await b.list_runs()] == ["only-in-b"]
            assert await b.load("only-in-a") is None
        assert db_query(pg_url, "SELECT run_id FROM pyagent_runs") == [("only-in-a",)]
    finally:
        schema = other.rsplit("=", 1)[1]
        db_query(pg_base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')



async def test_a_local_socket_url_reaches_the_server(pg_base_url: str, db_query: Any) -> None:
    """``postgresql:///db?host=/socket/dir``: libpq's form for a server on a Unix socket."""
    import os

    parts = urlsplit(pg_base_url)
    port = parts.port or 5432
    folder = next((d for d in ("/var/run/postgresql", "/run/postgresql", "/tmp")
                   if os.path.exists(f"{d}/.s.PGSQL.{port}")), None)
    if folder is None:
        pytest.skip(f"the test server has no Unix socket for port {port} in the usual folders")
    import uuid

    schema = f"pyagent_test_{uuid.uuid4().hex[:12]}"
    user = parts.username or "postgres"
    url = f"postgresql://{parts.path}?host={folder}&port={port}&user={user}&schema={schema}"
    try:
        async with postgres(url) as store:
            await store.save_run(RunHeader("over-the-socket", "wf", "running", 1.0))
            assert [h.run_id for h in await store.list_runs()] == ["over-the-socket"]
    finally:
        db_query(pg_base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_a_write_cancelled_in_flight_does_not_break_later_writes(pg_url: str) -> None:
    """A run cancelled while its checkpoint write waits on the server (a parallel sibling
    failing fast, a timeout) must leave the store usable for every later write."""
    import asyncio
    import threading

    import anyio
    import asyncpg

    parts = urlsplit(pg_url)
    schema = dict(p.split("=", 1) for p in parts.query.split("&"))["schema"]
    plain = urlunsplit(parts._replace(query=""))
    holding, release = threading.Event(), threading.Event()

    async def hold_the_row() -> None:
        # Insert (r1, 0) in a transaction left open: our insert of the same key has to wait.
        conn = await asyncpg.connect(plain, server_settings={"search_path": schema})
        try:
            tr = conn.transaction()
            await tr.start()
            await conn.execute("INSERT INTO pyagent_checkpoints (run_id, seq, kind, payload, created_at) "
                               "VALUES ('r1', 0, 'full', 'x', 0)")
            holding.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
            await tr.rollback()
        finally:
            await conn.close()

    async with postgres(pg_url) as store:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))  # schema created
        blocker = threading.Thread(target=asyncio.run, args=(hold_the_row(),))
        blocker.start()
        try:
            assert await anyio.to_thread.run_sync(holding.wait, 30)
            with anyio.move_on_after(0.5) as scope:
                await store.append_checkpoint(Checkpoint("r1", 0, "full", b"mine", 1.0))
            assert scope.cancelled_caught  # it was waiting on the server when cancelled
        finally:
            release.set()
            await anyio.to_thread.run_sync(blocker.join, 30)
        with anyio.fail_after(10):
            await store.append_checkpoint(Checkpoint("r1", 1, "full", b"next", 2.0))
            await store.save_run(RunHeader("r1", "wf", "completed", 1.0, 3.0))
        loaded = await store.load("r1")
    assert loaded is not None and loaded.header.status == "completed"
    assert [c.payload for c in loaded.checkpoints] == [b"next"]


async def test_application_name_reaches_the_server(pg_url: str, pg_base_url: str, db_query: Any) -> None:
    """A libpq run-time parameter in the URL becomes a server setting of the store's session."""
    import uuid

    name = f"pyagent-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in pg_url else "?"
    async with postgres(f"{pg_url}{sep}application_name={name}") as store:
        await store.save_run(RunHeader("named-session", "wf", "running", 1.0))
        # The store's connection is open: the server lists it under that name.
        rows = db_query(pg_base_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)
    assert rows[0][0] >= 1


@pytest.mark.parametrize("write", ["checkpoint", "header"])
async def test_a_fenced_write_in_flight_when_the_run_is_taken_over_is_seen_or_refused(
        pg_url: str, db_query: Any, write: str) -> None:
    """The old owner's write passed its fence check just before a new owner claimed the run,
    and commits after it: the new owner must either see it when it loads the run, or the write
    must be refused. Without a lock on the lease row the write landed unseen, and the new
    owner's first checkpoint then collided with it (CheckpointConflictError)."""
    import uuid

    import anyio

    from pyagent import RunOwnedError

    tag = f"old-owner-{uuid.uuid4().hex[:8]}"
    old, new = postgres(f"{pg_url}&application_name={tag}"), postgres(pg_url)
    await old.open()
    await new.open()
    try:
        await old.claim_run("r", "old", "old-token", now=0.0, ttl=10.0)
        await old.begin_run(RunHeader("r", "w", "running", 1.0), Checkpoint("r", 0, "full", b"first", 1.0),
                            fence="old-token")
        # Hold the old owner's write inside the server for a while, after its fence was checked.
        table, when = (("pyagent_checkpoints", "NEW.seq = 1") if write == "checkpoint"
                       else ("pyagent_runs", "NEW.status = 'late'"))
        db_query(pg_url, "CREATE FUNCTION slow_write() RETURNS trigger AS $$ BEGIN "
                         f"IF {when} THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
        db_query(pg_url, f"CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
                         "EXECUTE FUNCTION slow_write()")
        outcome: dict[str, Any] = {}

        async def old_owner_writes() -> None:
            try:
                if write == "checkpoint":
                    await old.append_checkpoint(Checkpoint("r", 1, "delta", b"late", 2.0), fence="old-token")
                else:
                    await old.save_run(RunHeader("r", "w", "late", 1.0), fence="old-token")
                outcome["old"] = "written"
            except RunOwnedError:
                outcome["old"] = "refused"

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(old_owner_writes)
                while not db_query(pg_url, "SELECT 1 FROM pg_stat_activity WHERE application_name = ? "
                                           "AND wait_event = 'PgSleep'", tag):
                    await anyio.sleep(0.01)  # until the old write is inside the server, its fence passed
                lease = await new.claim_run("r", "new", "new-token", now=100.0, ttl=10.0)  # old lease expired
                assert lease.token == "new-token"
                stored = await new.load("r")
                assert stored is not None
                seen = [cp.seq for cp in stored.checkpoints]
                header = stored.header.status
        if outcome["old"] == "written":  # then the new owner saw it when it loaded the run
            assert (1 in seen) if write == "checkpoint" else header == "late", (seen, header)
        await new.append_checkpoint(Checkpoint("r", max(seen) + 1, "full", b"resumed", 3.0), fence="new-token")
        await new.save_run(RunHeader("r", "w", "running", 1.0), fence="new-token")
        final = await new.load("r")
        assert final is not None and final.header.status == "running"
    finally:
        await old.close()
        await new.close()
