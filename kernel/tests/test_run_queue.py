"""The run queue of the memory store: dequeue_runs, request_cancel, cancel_requests.

The same semantics are what pyagent-sql's stores keep across processes (its own tests).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from pyagent._defaults.memory_store import MemoryStore
from pyagent.durability.store import Claim, RunHeader, supports_queue

pytestmark = pytest.mark.anyio


def queued(store: MemoryStore, run_id: str, workflow: str = "w", at: float = 0.0, status: str = "pending") -> None:
    store._runs[run_id] = RunHeader(run_id=run_id, workflow=workflow, status=status, started_at=at)


async def test_the_memory_store_is_a_queue_and_the_plugin_api_exports_claim(store_url: str) -> None:
    import pyagent.plugin

    assert supports_queue(MemoryStore(store_url))
    assert pyagent.plugin.Claim is Claim


async def test_dequeue_claims_ready_runs_oldest_first_with_a_lease_each(store_url: str) -> None:
    store = MemoryStore(store_url)
    for i, at in enumerate([30.0, 10.0, 20.0]):
        queued(store, f"r{i}", at=at)
    queued(store, "done", status="completed")
    queued(store, "waits", status="waiting")
    queued(store, "other", workflow="not-served")
    claims = await store.dequeue_runs("me", now=100.0, ttl=15.0, limit=2, workflows={"w": None})
    assert [c.header.run_id for c in claims] == ["r1", "r2"]
    for c in claims:
        assert c.lease.owner == "me" and c.lease.claimed_at == 100.0 and c.lease.expires_at == 115.0
        assert await store.get_lease(c.header.run_id) == c.lease
    assert len({c.lease.token for c in claims}) == 2
    rest = await store.dequeue_runs("me", now=100.0, ttl=15.0, limit=10, workflows={"w": None})
    assert [c.header.run_id for c in rest] == ["r0"]
    assert await store.dequeue_runs("me", now=100.0, ttl=15.0, limit=10, workflows={"w": None}) == []
    assert await store.dequeue_runs("me", now=100.0, ttl=15.0, limit=0, workflows={"w": None}) == []
    assert await store.dequeue_runs("me", now=100.0, ttl=15.0, limit=5, workflows={}) == []


async def test_an_orphan_is_claimable_once_its_lease_expired(store_url: str) -> None:
    store = MemoryStore(store_url)
    queued(store, "orphan", status="running")
    dead = await store.claim_run("orphan", "dead", "t0", now=0.0, ttl=10.0)
    assert await store.dequeue_runs("me", now=9.9, ttl=5.0, limit=5, workflows={"w": None}) == []
    [claim] = await store.dequeue_runs("me", now=10.0, ttl=5.0, limit=5, workflows={"w": None})
    assert claim.header.status == "running" and claim.lease.token != dead.token
    # the dead owner's fenced writes are refused from now on
    assert not await store.renew_lease("orphan", dead.token, now=10.0, ttl=10.0)


async def test_max_active_counts_live_leases_of_every_origin(store_url: str) -> None:
    store = MemoryStore(store_url)
    for i in range(5):
        queued(store, f"q{i}", at=float(i))
    queued(store, "direct", status="running", at=-1.0)
    await store.claim_run("direct", "elsewhere", "tok", now=0.0, ttl=100.0)  # a run started directly
    got = await store.dequeue_runs("a", now=1.0, ttl=50.0, limit=10, workflows={"w": 3})
    assert [c.header.run_id for c in got] == ["q0", "q1"]  # 3 active with "direct"
    assert await store.dequeue_runs("b", now=1.0, ttl=50.0, limit=10, workflows={"w": 3}) == []
    store._runs["q0"].status = "completed"  # a run ended (and gave its lease back): one more may start
    await store.release_run("q0", got[0].lease.token)
    [more] = await store.dequeue_runs("b", now=2.0, ttl=50.0, limit=10, workflows={"w": 3})
    assert more.header.run_id == "q2"
    # expired leases are not active any more: their runs (orphans) are taken again, oldest first
    after = await store.dequeue_runs("c", now=101.0, ttl=50.0, limit=10, workflows={"w": 3})
    assert [c.header.run_id for c in after] == ["direct", "q1", "q2"]


async def test_concurrent_dequeues_from_threads_never_claim_a_run_twice_nor_exceed_the_bound(store_url: str) -> None:
    store = MemoryStore(store_url)
    for i in range(200):
        queued(store, f"r{i:03}", workflow="free" if i % 2 else "bounded", at=float(i))
    claimed: list[Claim] = []
    lock = threading.Lock()

    def replica(name: str) -> None:
        async def go() -> None:
            for _ in range(40):
                got = await store.dequeue_runs(name, now=1.0, ttl=100.0, limit=3,
                                               workflows={"free": None, "bounded": 7})
                with lock:
                    claimed.extend(got)
        anyio.run(go)

    threads = [threading.Thread(target=replica, args=(f"replica{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = [c.header.run_id for c in claimed]
    assert len(ids) == len(set(ids))
    assert sum(1 for c in claimed if c.header.workflow == "bounded") == 7
    assert sum(1 for c in claimed if c.header.workflow == "free") == 100


async def test_cancel_of_a_queued_leased_finished_and_missing_run(store_url: str) -> None:
    store = MemoryStore(store_url)
    queued(store, "queued")
    queued(store, "leased", status="running")
    queued(store, "done", status="completed")
    lease = await store.claim_run("leased", "owner", "tok", now=0.0, ttl=30.0)

    assert await store.request_cancel("queued", reason="not needed", now=5.0) == "cancelled"
    stored = await store.load("queued")
    assert stored is not None and stored.header.status == "cancelled" and stored.header.finished_at == 5.0

    assert await store.request_cancel("leased", reason="stop it", now=5.0) == "requested"
    assert await store.request_cancel("leased", reason="second ask", now=6.0) == "requested"
    stored = await store.load("leased")
    assert stored is not None and stored.header.status == "running"  # its owner stops it

    assert await store.request_cancel("done", reason="late", now=5.0) == "finished"
    assert await store.request_cancel("nope", reason="?", now=5.0) is None
    assert await store.cancel_requests(["queued", "leased", "done", "nope"]) == {
        "queued": "not needed", "leased": "stop it"}  # the first reason is kept

    # a run asked to cancel is never taken off the queue, even once its owner died...
    assert await store.dequeue_runs("me", now=31.0, ttl=5.0, limit=5, workflows={"w": None}) == []
    # ...and asking again once nobody holds it cancels it
    assert lease.expired(31.0)
    assert await store.request_cancel("leased", reason="again", now=31.0) == "cancelled"
    stored = await store.load("leased")
    assert stored is not None and stored.header.status == "cancelled"


async def test_a_waiting_run_without_a_lease_is_cancelled_at_once(store_url: str) -> None:
    store = MemoryStore(store_url)
    queued(store, "asks", status="waiting")
    assert await store.request_cancel("asks", reason="nobody will answer", now=1.0) == "cancelled"
    stored = await store.load("asks")
    assert stored is not None and stored.header.status == "cancelled"


def test_max_active_runs_is_checked_when_the_workflow_is_built() -> None:
    from pydantic import ValidationError

    from pyagent import Task, Workflow

    steps = [Task(name="a", agent=lambda x: x)]
    assert Workflow(name="w", steps=steps, max_active_runs=2).max_active_runs == 2
    assert Workflow(name="w", steps=steps).max_active_runs is None
    for bad in (0, -3, 2.5, "2", True):
        with pytest.raises(ValidationError, match=r"max_active_runs=.*whole number >= 1"):
            Workflow(name="w", steps=steps, max_active_runs=bad)


async def test_max_active_runs_bounds_runs_in_one_process(mini_runtime: Any) -> None:
    from pyagent import Task, Workflow

    active = peak = 0
    release = anyio.Event()

    async def work(x: Any) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        return x

    wf = Workflow(name="bounded", steps=[Task(name="work", agent=work)], max_active_runs=2)
    results: list[Any] = []

    async def one(i: int) -> None:
        results.append(await wf.run(i))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
        with anyio.fail_after(5):
            while active < 2:
                await anyio.sleep(0.001)
        await anyio.wait_all_tasks_blocked()
        assert active == 2 and len(wf._active) == 2  # the other four wait for a slot, not started
        release.set()
    assert peak == 2 and sorted(r.output for r in results) == list(range(6))
    assert all(r.status.value == "completed" for r in results)


# -- the command line: pyagent runs, pyagent runs cancel, pyagent serve --concurrency ---------------


def _seed(url: str) -> dict[str, str]:
    """A queued, a running (leased), a waiting, a failed and a completed run in the store at ``url``."""
    from pyagent import Task, Workflow
    from pyagent.serving import records

    store = MemoryStore(url)
    wf = Workflow(name="ingest", steps=[Task(name="a", agent=lambda x: x)])
    ids = {"queued": "r-queued", "running": "r-running", "waiting": "r-waiting", "failed": "r-failed",
           "done": "r-done"}
    for i, (what, run_id) in enumerate(ids.items()):
        header = records.pending_header(wf, run_id, {"i": i}, trigger="test", source="t", at=1000.0 + i)
        if what == "failed":
            header = records.failed_header(wf, run_id, "ValueError: bad row 7", at=1000.0 + i)
        elif what != "queued":
            header = records.with_status(header, {"running": "running", "waiting": "waiting", "done": "completed"}[what])
        store._runs[run_id] = header
    anyio.run(lambda: store.claim_run("r-running", "web-2", "tok", now=__import__("time").time(), ttl=60.0))
    return ids


def test_pyagent_runs_lists_what_is_not_over_newest_first_with_who_holds_it(store_url: str, mini_runtime: Any) -> None:
    import json

    from click.testing import CliRunner

    from pyagent.cli import main

    _seed(store_url)
    out = CliRunner().invoke(main, ["runs", "--storage", store_url])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    listed = [line.split()[2] for line in lines if not line.startswith("    ")]
    assert listed == ["r-failed", "r-waiting", "r-running", "r-queued"]  # newest first; completed left out
    running = next(line for line in lines if "r-running" in line)
    assert "owner web-2 (lease expires in" in running
    assert "    error: ValueError: bad row 7" in lines

    rows = json.loads(CliRunner().invoke(main, ["runs", "--storage", store_url, "--json", "--status", "running"]).output)
    assert [(r["run_id"], r["owner"]) for r in rows] == [("r-running", "web-2")]
    assert rows[0]["lease_expires_at"] > rows[0]["started_at"]
    limited = CliRunner().invoke(main, ["runs", "--storage", store_url, "--limit", "1", "--workflow", "ingest"])
    assert "r-failed" in limited.output and "r-waiting" not in limited.output
    assert "No runs found." in CliRunner().invoke(main, ["runs", "--storage", store_url, "--workflow", "x"]).output

    bad = CliRunner().invoke(main, ["runs", "--storage", store_url, "--status", "runing"])
    assert bad.exit_code == 2 and "--status 'runing' is not a run status" in bad.output
    nowhere = CliRunner().invoke(main, ["runs", "--storage", "nosuch://x"])
    assert nowhere.exit_code == 2 and nowhere.output.startswith("Error: ") and len(nowhere.output.splitlines()) == 1


def test_pyagent_runs_cancel_cancels_queued_requests_held_and_reports_the_rest(store_url: str,
                                                                                mini_runtime: Any) -> None:
    from click.testing import CliRunner

    from pyagent.cli import main

    _seed(store_url)
    store = MemoryStore(store_url)
    out = CliRunner().invoke(main, ["runs", "cancel", "r-queued", "--storage", store_url, "--reason", "dup"])
    assert out.exit_code == 0 and "Cancelled run r-queued" in out.output
    assert store._runs["r-queued"].status == "cancelled"
    out = CliRunner().invoke(main, ["runs", "--storage", store_url, "cancel", "r-running"])  # --storage on the group
    assert out.exit_code == 0 and "Cancel requested: web-2 stops run r-running" in out.output
    assert anyio.run(lambda: store.cancel_requests(["r-running"])) == {"r-running": "cancelled on request"}
    out = CliRunner().invoke(main, ["runs", "--storage", store_url])
    assert "cancel requested: cancelled on request" in next(x for x in out.output.splitlines() if "r-running" in x)
    out = CliRunner().invoke(main, ["runs", "cancel", "r-done", "--storage", store_url])
    assert out.exit_code == 0 and "has already ended (completed): nothing to cancel" in out.output
    out = CliRunner().invoke(main, ["runs", "cancel", "r-nope", "--storage", store_url])
    assert out.exit_code == 1 and "no run 'r-nope'" in out.output


def test_pyagent_runs_cancel_refuses_a_store_that_is_no_queue(store_url: str, bare_runtime: Any) -> None:
    from click.testing import CliRunner

    from pyagent import hookimpl
    from pyagent.cli import main

    class NoQueue(MemoryStore):
        dequeue_runs = request_cancel = cancel_requests = None  # type: ignore[assignment]

    class Plugin:
        @hookimpl
        def pyagent_register_stores(self, register: Any) -> None:
            register("plain", NoQueue)

    bare_runtime.register(Plugin(), "plain-store")
    out = CliRunner().invoke(main, ["runs", "cancel", "r1", "--storage", "plain://x"])
    assert out.exit_code == 2 and "cannot cancel runs across processes" in out.output


def test_serve_takes_concurrency_and_poll_interval(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from pyagent.cli import main

    app = tmp_path / "app.py"
    app.write_text("")
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--concurrency" in help_text and "--poll-interval" in help_text
    assert "Invalid value for '--concurrency'" in CliRunner().invoke(main, ["serve", str(app), "--concurrency", "0"]).output
    assert "Invalid value for '--poll-interval'" in CliRunner().invoke(
        main, ["serve", str(app), "--poll-interval", "0"]).output
