from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pyagent_sql.urls import parse_sqlite

from pyagent.plugin import Store, get_runtime
from pyagent.testing_fixtures import *  # noqa: F403

POSTGRES_ENV = "PYAGENT_TEST_POSTGRES_URL"


def postgres_base_url() -> str:
    """The test server's URL, or skip the test saying how to enable it."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"{POSTGRES_ENV} is not set: point it at a PostgreSQL server to run these tests, "
            "e.g. postgresql://postgres@127.0.0.1:5432/test (CI sets it)"
        )
    return url


def with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.split("?", 1)[0].replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def pg_base_url() -> str:
    """The test server's URL as given (skips when unset)."""
    return postgres_base_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL into a schema of its own on the test server, dropped afterwards."""
    base = postgres_base_url()
    schema = f"pyagent_test_{uuid.uuid4().hex[:12]}"
    yield with_schema(base, schema)
    asyncio.run(_drop_schema(base, schema))


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """An absolute SQLAlchemy-style URL to a fresh file."""
    return f"sqlite:///{tmp_path / 'checkpoints.db'}"


def query_database(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) in its own transaction and return the rows."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(parse_sqlite(url).path)
        try:
            with conn:
                return [tuple(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()
    # In a thread: the caller may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _pg_query(url, sql, *args)).result()


async def _pg_query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import asyncpg

    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", ["public"])[0]
    conn = await asyncpg.connect(url.split("?", 1)[0], server_settings={"search_path": schema})
    try:
        n = 0

        def number(_: Any) -> str:
            nonlocal n
            n += 1
            return f"${n}"

        rows = await conn.fetch(re.sub(r"\?", number, sql), *args)
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


@pytest.fixture
def db_query() -> Callable[..., list[tuple[Any, ...]]]:
    """``db_query(url, sql, *args)``: look inside a test database with the plain drivers."""
    return query_database


def store_for(url: str) -> Store:
    """A store made the way the kernel makes one: the factory registered under the URL's scheme
    (the ``pyagent.stores`` entry-point group), called with the URL; a ``Store`` it must be."""
    store = get_runtime().driver("stores", url.split("://", 1)[0])(url)
    assert isinstance(store, Store)
    return store


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[Any]:
    """``store_for(url)``, opened, and closed afterwards."""
    store = store_for(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def make_store() -> Callable[[str], Store]:
    """``make_store(url)``: a new store for the URL, not opened (see ``store_for``)."""
    return store_for


@pytest.fixture
def opened() -> Callable[[str], AbstractAsyncContextManager[Any]]:
    """``async with opened(url) as store``: a new store for the URL, open inside the block."""
    return opened_store


class _Chain:
    """A pass-forward pattern, so these tests can run workflows with only the kernel and this plugin."""

    async def execute(self, run: Any) -> Any:
        value = run.input
        for step in run.workflow.steps:
            rec = await run.run_step(step, value)
            value = rec.output
        return value


class _ChainPlugin:
    from pyagent import hookimpl as _hookimpl

    @_hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("sql-test-chain", _Chain())


@pytest.fixture
def chain_runtime(runtime: Any) -> Any:
    """A fresh runtime (installed plugins discovered) with the pattern ``sql-test-chain``."""
    runtime.register(_ChainPlugin(), "sql-test-chain")
    return runtime
