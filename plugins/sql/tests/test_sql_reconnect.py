"""PostgreSQL connections the server dropped are replaced, and errors never carry task outputs.

A long-lived process keeps its connections between runs. When the server drops them (a
restart, a failover, an idle timeout, ``pg_terminate_backend``), the next runs, history queries
and resumes must work at once, and a run whose connection is dropped mid-run must carry on
with a fresh one. Everything here runs against the real server, killing the store's sessions
with ``pg_terminate_backend`` (the test user is a superuser) or cutting them at a TCP proxy.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from pyagent_sql import StoreUnavailableError
from pyagent_sql.errors import describe

from pyagent import StoreError, Task, Workflow
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import Orchestrator

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_name() -> str:
    return f"pyagent-reconnect-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def named_url(pg_url: str, app_name: str) -> str:
    return f"{pg_url}&application_name={app_name}"


def terminate(db_query: Any, base: str, app_name: str) -> int:
    """Terminate every server session of the store under test; how many there were."""
    rows = db_query(base, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
                    app_name)
    return len(rows)


def chain(url: str, n: int = 3, fail: set[str] | None = None, hook: Any = None) -> Workflow:
    def step(name: str) -> Any:
        def fn(x: Any) -> Any:
            if hook is not None:
                hook(name)
            if fail and name in fail:
                raise RuntimeError(f"{name} is down")
            return f"{x}>{name}"

        fn.__name__ = name
        return fn

    return Workflow(name="reconnect", pattern="sql-test-chain", checkpointing={"storage": url},
                    steps=[Task(name=f"t{i}", agent=step(f"t{i}")) for i in range(n)])


async def test_runs_history_and_resume_work_right_after_the_server_dropped_idle_connections(
        chain_runtime: Any, named_url: str, pg_base_url: str, app_name: str, db_query: Any) -> None:
    orchestrator = Orchestrator(store=named_url)
    first = await chain(named_url).run("in")
    assert first.ok
    assert len(await orchestrator.aget_history()) == 1  # a pooled read connection too
    # The process keeps its connections between runs; the server drops all of them.
    assert terminate(db_query, pg_base_url, app_name) >= 2
    for i in range(3):
        result = await chain(named_url).run(f"again-{i}")
        assert result.ok, result.error
        assert not result.errors
    assert terminate(db_query, pg_base_url, app_name) >= 1
    history = await orchestrator.aget_history()
    assert len(history) == 4 and all(h.status is TaskStatus.COMPLETED for h in history)

    failed = await chain(named_url, fail={"t1"}).run("in")
    assert failed.status is TaskStatus.FAILED
    assert terminate(db_query, pg_base_url, app_name) >= 1
    resumed = await chain(named_url).resume_from(failed.run_id)
    assert resumed.ok and resumed.output == "in>t0>t1>t2" and resumed.tasks["t0"].reused


async def test_a_run_whose_connection_is_dropped_mid_run_carries_on(
        chain_runtime: Any, named_url: str, pg_base_url: str, app_name: str, db_query: Any) -> None:
    killed: list[int] = []

    def hook(name: str) -> None:
        if name in ("t1", "t3"):  # between two checkpoint writes: the held connection dies
            killed.append(terminate(db_query, pg_base_url, app_name))

    result = await chain(named_url, n=5, hook=hook).run("in")
    assert result.ok, result.error
    assert not result.errors and len(killed) == 2 and min(killed) >= 1
    rows = db_query(named_url, "SELECT seq, kind FROM pyagent_checkpoints WHERE run_id = ? ORDER BY seq",
                    result.run_id)
    assert [r[0] for r in rows] == list(range(7))  # the first, one per task, the final: none lost


class Proxy:
    """A TCP proxy to the server that the test can cut (dropping every connection and refusing
    new ones) and restore on the same port: a server going away and coming back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close() does not
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(pg_base_url: str) -> Iterator[Proxy]:
    from urllib.parse import urlsplit

    parts = urlsplit(pg_base_url)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.down()


def through(proxy: Proxy, pg_url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_a_checkpoint_write_waits_for_a_server_that_comes_back(
        chain_runtime: Any, pg_url: str, proxy: Proxy) -> None:
    url = through(proxy, pg_url)
    cut = threading.Event()

    def hook(name: str) -> None:
        if name == "t2":
            proxy.down()  # the server is gone for a second, mid-run
            cut.set()
            threading.Timer(1.0, proxy.up).start()

    with anyio.fail_after(30):
        result = await chain(url, n=4, hook=hook).run("in")
    assert cut.is_set()
    assert result.ok, result.error
    assert not result.errors


async def test_a_server_gone_for_longer_than_the_retry_bound_fails_the_run_clearly(
        chain_runtime: Any, pg_url: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyagent_sql.postgres import PostgresBackend

    monkeypatch.setattr(PostgresBackend, "retry_seconds", 0.5)
    url = through(proxy, pg_url)

    def hook(name: str) -> None:
        if name == "t1":
            proxy.down()

    with anyio.fail_after(30):
        result = await chain(url, n=3, hook=hook).run("in")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, StoreUnavailableError)
    assert "writing checkpoint 2 of run" in (result.error or "")
    assert "could not be reached" in (result.error or "") and "pg_isready" in (result.error or "")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_store_errors_never_carry_statement_parameters(
        chain_runtime: Any, pg_url: str, db_query: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, encrypted: bool) -> None:
    if encrypted:
        fernet = pytest.importorskip("cryptography.fernet")
        monkeypatch.setenv("PYAGENT_STATE_KEY", fernet.Fernet.generate_key().decode())
    marker = f"SECRET-{uuid.uuid4().hex}"
    wf = Workflow(name="leaky", pattern="sql-test-chain", checkpointing={"storage": pg_url}, steps=[
        Task(name="t0", agent=lambda x: x), Task(name="t1", agent=lambda x: {"card": marker}),
        Task(name="t2", agent=lambda x: x)])
    assert (await wf.run("warm-up")).ok  # the schema exists
    db_query(pg_url, """
        CREATE FUNCTION refuse_checkpoints() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'checkpoint refused by policy'; END $$ LANGUAGE plpgsql""")
    db_query(pg_url, "CREATE TRIGGER refuse BEFORE INSERT ON pyagent_checkpoints FOR EACH ROW "
                     "WHEN (NEW.seq = 2) EXECUTE FUNCTION refuse_checkpoints()")
    caplog.set_level(logging.DEBUG)
    result = await wf.run("in")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, StoreError)
    text = f"{result.error} {result.errors} {caplog.text}"
    assert "checkpoint refused by policy" in (result.error or "")
    assert "writing checkpoint 2 of run" in (result.error or "")
    assert marker not in text
    assert "[parameters" not in text and "gAAAA" not in text  # no parameters, no Fernet tokens
    assert "pyagent_test_" in text  # the store is named (its schema), not its data


def test_driver_messages_lose_argument_values() -> None:
    class DataError(Exception):
        pass

    exc = DataError("invalid input for query argument $4: b'{\"card\": \"4111\"...' (expected str, got bytes)")
    assert describe(exc) == "DataError: invalid input for query argument $4 (value withheld)"
    assert describe(DataError("line one\nline two")) == "DataError: line one"


async def test_a_server_gone_when_a_store_is_opened_again_is_a_store_unavailable_error(
        chain_runtime: Any, pg_url: str, proxy: Proxy) -> None:
    # The process's connections to this database outlive the run (the backend stays ready);
    # the next open finds the server gone.
    url = through(proxy, pg_url)
    assert (await chain(url).run("in")).ok
    proxy.down()
    for attempt in (lambda: chain(url).run("in"), lambda: Orchestrator(store=url).aget_history()):
        with anyio.fail_after(60), pytest.raises(StoreUnavailableError) as refused:
            await attempt()
        message = str(refused.value)
        assert "could not be reached" in message and "pg_isready" in message, message
        assert "\n" not in message and "[SQL" not in message, message


async def test_a_connection_dropped_while_a_store_is_opened_is_replaced(
        chain_runtime: Any, named_url: str, pg_base_url: str, app_name: str, db_query: Any) -> None:
    """The schema check at every open reads on a pooled connection: when the server drops it
    mid-read, the check reads once more on a fresh one instead of failing the run."""
    import asyncio
    import concurrent.futures
    from urllib.parse import parse_qs, urlsplit

    import asyncpg

    assert (await chain(named_url).run("warm")).ok
    schema = parse_qs(urlsplit(named_url).query)["schema"][0]
    locked, release = threading.Event(), threading.Event()

    async def hold_lock() -> None:
        # A lock that makes the next schema check wait, so its session can be killed mid-read.
        conn = await asyncpg.connect(pg_base_url)
        try:
            async with conn.transaction():
                await conn.execute(f'LOCK TABLE "{schema}".pyagent_schema_version IN ACCESS EXCLUSIVE MODE')
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.01)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder = pool.submit(asyncio.run, hold_lock())
        assert locked.wait(30)
        killed: list[int] = []

        def kill_the_waiting_check() -> None:
            for _ in range(3000):
                rows = db_query(pg_base_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = ? AND wait_event_type = 'Lock'", app_name)
                if rows:
                    killed.append(len(rows))
                    break
                threading.Event().wait(0.01)
            release.set()

        killer = threading.Thread(target=kill_the_waiting_check)
        killer.start()
        try:
            with anyio.fail_after(60):
                result = await chain(named_url).run("in")
        finally:
            release.set()
            killer.join(30)
            holder.result(30)
    assert killed == [1]
    assert result.ok, result.error
