"""SQLite specifics: where the file goes, WAL, bad files, a locked database, several processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from anyio import wait_all_tasks_blocked
from pyagent_sql import StoreUnavailableError

from pyagent.durability.store import Checkpoint, RunHeader
from pyagent.plugins import get_runtime

pytestmark = pytest.mark.anyio


def sqlite(url: str):  # type: ignore[no-untyped-def]
    return get_runtime().driver("stores", "sqlite")(url)


async def test_the_seed_url_writes_checkpoints_db_in_the_working_directory(
    db_query: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = sqlite("sqlite://checkpoints.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # created before the chdir: the file stays where it was named
    async with store:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
    assert (tmp_path / "checkpoints.db").is_file()
    assert not (elsewhere / "checkpoints.db").exists()
    assert db_query(f"sqlite:///{tmp_path / 'checkpoints.db'}", "SELECT run_id FROM pyagent_runs") == [("r1",)]


async def test_the_database_is_in_wal_mode_and_folded_back_when_the_last_store_closes(
    db_query: Any, sqlite_url: str, tmp_path: Path
) -> None:
    wal = tmp_path / "checkpoints.db-wal"
    async with sqlite(sqlite_url) as store, sqlite(sqlite_url) as other:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
        await store.append_checkpoint(Checkpoint("r1", 0, "full", b"x" * 10_000, 1.0))
        assert db_query(sqlite_url, "PRAGMA journal_mode") == [("wal",)]
        await other.close()
        assert wal.stat().st_size > 10_000  # one store still open: the log is left alone
    assert wal.stat().st_size == 0
    # The database file alone now holds everything.
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "checkpoints.db").read_bytes())
    assert db_query(f"sqlite:///{copy}", "SELECT length(payload) FROM pyagent_checkpoints") == [(10_000,)]


async def test_a_missing_directory_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    store = sqlite(f"sqlite:///{tmp_path}/no/such/dir/cp.db")
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    message = str(info.value)
    assert f"{tmp_path}/no/such/dir" in message and "does not exist" in message
    assert not (tmp_path / "no").exists()


async def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    store = sqlite(f"sqlite:///{path}")
    with pytest.raises(StoreUnavailableError, match="not an SQLite database") as info:
        await store.open()
    assert str(path) in str(info.value)
    assert path.read_bytes() == content
    # A failed open may be retried and fails the same way (no half-open state).
    with pytest.raises(StoreUnavailableError):
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))


async def test_a_write_waits_for_another_writer_without_blocking_the_event_loop(db_query: Any, sqlite_url: str) -> None:
    async with sqlite(sqlite_url) as store:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        written = anyio.Event()

        async def write() -> None:
            await store.append_checkpoint(Checkpoint("r1", 0, "full", b"waited", 1.0))
            await store.append_checkpoint(Checkpoint("r1", 1, "delta", b"in order", 2.0))
            written.set()

        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(write)
                    await wait_all_tasks_blocked()
                    # The writer is parked, this task still runs: the loop is not blocked.
                    assert not written.is_set()
                    assert db_query(sqlite_url, "SELECT count(*) FROM pyagent_checkpoints") == [(0,)]
                    blocker.execute("COMMIT")
                    await written.wait()
        finally:
            blocker.close()
        loaded = await store.load("r1")
        assert loaded is not None
        assert [c.payload for c in loaded.checkpoints] == [b"waited", b"in order"]
        # With the lock free again, the next write commits at once.
        await store.append_checkpoint(Checkpoint("r1", 2, "delta", b"fast", 3.0))
        assert db_query(sqlite_url, "SELECT count(*) FROM pyagent_checkpoints") == [(3,)]


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pyagent.plugins import get_runtime
    from pyagent.durability.store import Checkpoint, RunHeader

    async def main(url, run, n):
        store = get_runtime().driver("stores", "sqlite")(url)
        async with store:
            await store.save_run(RunHeader(run, "wf", "running", 1.0))
            for seq in range(n):
                await store.append_checkpoint(Checkpoint(run, seq, "delta", b"%d" % seq, 1.0))
            await store.save_run(RunHeader(run, "wf", "completed", 1.0))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def test_several_processes_write_to_one_file_and_nothing_is_lost(db_query: Any, sqlite_url: str) -> None:
    n, procs = 300, 4
    running = [
        subprocess.Popen([sys.executable, "-c", WRITER, sqlite_url, f"run-{i}", str(n)], stderr=subprocess.PIPE)
        for i in range(procs)
    ]
    for p in running:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert db_query(sqlite_url, "SELECT run_id, count(*) FROM pyagent_checkpoints GROUP BY run_id ORDER BY run_id") == [
        (f"run-{i}", n) for i in range(procs)
    ]
    assert db_query(sqlite_url, "SELECT DISTINCT status FROM pyagent_runs") == [("completed",)]


def test_one_store_serves_several_event_loops_and_both_backends(sqlite_url: str) -> None:
    """Sync helpers start a fresh loop per call; the store must not be tied to the first one."""
    store = sqlite(sqlite_url)
    asyncio.run(store.open())
    asyncio.run(store.save_run(RunHeader("r1", "wf", "running", 1.0)))
    trio.run(store.append_checkpoint, Checkpoint("r1", 0, "full", b"from trio", 1.0))
    loaded = asyncio.run(store.load("r1"))
    asyncio.run(store.close())
    assert loaded is not None and loaded.checkpoints[0].payload == b"from trio"


async def test_a_store_opens_itself_on_first_use(sqlite_url: str) -> None:
    store = sqlite(sqlite_url)
    try:
        await store.save_run(RunHeader("r1", "wf", "running", 1.0))
        assert [h.run_id for h in await store.list_runs()] == ["r1"]
    finally:
        await store.close()


async def test_connections_are_shared_per_file_and_idle_ones_are_bounded(tmp_path: Path) -> None:
    from pyagent_sql import backend

    urls = [f"sqlite:///{tmp_path}/db{i}.db" for i in range(backend.MAX_IDLE + 3)]
    for i, url in enumerate(urls):
        async with sqlite(url) as store:
            await store.save_run(RunHeader(f"r{i}", "wf", "completed", float(i)))

    def threads_for(url: str) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"pyagent-sql {url}"]

    # One loop thread per file at most; the least recently used idle files were shut down.
    for url in urls[:3]:
        for thread in threads_for(url):
            thread.join(10)
            assert not thread.is_alive()
    assert all(len(threads_for(url)) <= 1 for url in urls)
    # Every database still answers: a shut-down one starts again on the next open.
    for i, url in enumerate(urls):
        async with sqlite(url) as store:
            assert [h.run_id for h in await store.list_runs()] == [f"r{i}"]


READ_ONLY_CHILD = textwrap.dedent(
    """
    import json, sys
    from pyagent import Task, Workflow, hookimpl
    from pyagent.plugins import get_runtime

    class Chain:
        async def execute(self, run):
            value = run.input
            for step in run.workflow.steps:
                value = (await run.run_step(step, value)).output
            return value

    class Plugin:
        @hookimpl
        def pyagent_register_patterns(self, register):
            register("chain", Chain())

    get_runtime().register(Plugin(), "chain")
    url, run_id = sys.argv[1], sys.argv[2]
    ran = []
    wf = Workflow(name="ro", pattern="chain", checkpointing={"storage": url},
                  steps=[Task(name="t0", agent=lambda x: ran.append("t0") or x)])
    out = {}
    for what, call in (("run", lambda: wf.run_sync("x")), ("resume", lambda: wf.resume_from(run_id))):
        try:
            call()
            out[what] = ["no error"]
        except Exception as exc:
            out[what] = [type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc)]
    out["ran"] = ran
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("read_only", ["file", "directory"])
def test_a_read_only_database_is_a_store_unavailable_error_naming_the_file(read_only: str) -> None:
    import json
    import os
    import shutil
    import tempfile

    command = [sys.executable, "-c", READ_ONLY_CHILD]
    if os.geteuid() == 0:
        # Root writes anywhere: the child runs without the capability that lets it.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot make a file read-only to the test")
        command = [setpriv, "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    folder = Path(tempfile.mkdtemp(prefix="pyagent-ro-"))
    try:
        os.chmod(folder, 0o755)
        db = folder / "checkpoints.db"
        url = f"sqlite:///{db}"

        async def failed_run() -> str:
            from pyagent.durability.store import RunHeader
            from pyagent.durability.stores import _close, open_store

            store = await open_store(url)
            try:
                await store.begin_run(RunHeader("failed-run", "ro", "failed", 1.0),
                                      Checkpoint("failed-run", 0, "full", b"x", 1.0))
            finally:
                await _close(store)
            return "failed-run"

        run_id = anyio.run(failed_run)
        from pyagent_sql.backend import dispose_all

        dispose_all()  # the file is closed: no -wal or -shm left behind
        os.chmod(db, 0o444)
        os.chmod(folder, 0o777 if read_only == "file" else 0o555)
        child = subprocess.run([*command, url, run_id], capture_output=True, text=True, timeout=120)
        assert child.returncode == 0, child.stderr
        out = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder, ignore_errors=True)
    assert out["ran"] == []  # refused before any agent ran
    for what in ("run", "resume"):
        name, mro, message = out[what]
        assert name == "StoreUnavailableError", out[what]
        assert "StoreError" in mro and "DriverLoadFailure" in mro
        assert str(db) in message, message
        assert "writable" in message or "cannot be opened" in message, message


def test_a_payload_edited_into_text_is_one_damaged_run_not_a_failed_history(
        chain_runtime: Any, sqlite_url: str, db_query: Any) -> None:
    """SQLite keeps text in a BLOB column (``UPDATE ... SET payload = '...'`` by hand): that run
    is unreadable, and every other run is still listed."""
    from pyagent import StateError, Task, Workflow
    from pyagent.durability.history import query_store

    wf = Workflow(name="edited", pattern="sql-test-chain", checkpointing={"storage": sqlite_url},
                  steps=[Task(name="a", agent=lambda x: x)])
    for run_id in ("before", "edited", "after"):
        assert wf.run_sync("in", run_id=run_id).ok
    db_query(sqlite_url, "UPDATE pyagent_runs SET payload = 'hand-edited' WHERE run_id = 'edited'")
    db_query(sqlite_url, "UPDATE pyagent_checkpoints SET payload = 'hand-edited' WHERE run_id = 'edited'")

    async def history() -> Any:
        return await query_store(sqlite_url, workflow=None, since=None, status=None)

    records = {r.run_id: r for r in anyio.run(history)}
    assert set(records) == {"before", "edited", "after"}
    assert records["before"].unreadable is None and records["after"].unreadable is None
    assert "not a pyagent payload" in (records["edited"].unreadable or "")
    with pytest.raises(StateError, match=r"checkpoint 0.*not a pyagent payload"):
        wf.resume_from("edited")
