"""PostgreSQL specifics on a real server: unreachable servers, missing databases, schemas."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pyagent_sql import StoreUnavailableError

from pyagent.plugins import get_runtime
from pyagent.store import Checkpoint, RunHeader

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
