"""orchestrator.serving()/serve(): recording before starting, bounded runs, drain, resume on start.

One process plays both lives of a server: the memory store keeps what a second serving of
the same orchestrator finds, as SQLite does across processes (tests/test_serve_process.py).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, hookimpl
from pyagent.durability.store import RunHeader
from pyagent.durability.stores import open_store
from pyagent.errors import NotAcceptingError
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.serving import records
from pyagent.testing import CountingAgents

pytestmark = pytest.mark.anyio


async def status(host: Any, run_id: str, want: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            found = await host.run_status(run_id)
            if found is not None and found["status"] == want:
                return found
            await anyio.sleep(0.005)


async def header_status(url: str, run_id: str) -> str | None:
    store = await open_store(url)
    try:
        stored = await store.load(run_id)
    finally:
        await store.close()
    return None if stored is None else stored.header.status


def gated(agents: CountingAgents, gate: anyio.Event) -> Workflow:
    async def hold(x: Any) -> Any:
        agents.calls["hold"] = agents.calls.get("hold", 0) + 1
        await gate.wait()
        return f"{x}>hold"

    return Workflow(name="job", steps=[Task(name="First", agent=agents["First"]), Task(name="Hold", agent=hold),
                                       Task(name="Last", agent=agents["Last"])])


async def test_in_flight_runs_finish_within_the_grace_period(serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    agents, gate = CountingAgents(), anyio.Event()
    wf = orch.add_workflow(gated(agents, gate))
    async with orch.serving(port=None, grace=10) as host:
        sub = await host.submit(wf, "in", trigger="test", source="t")
        await status(host, sub.run_id, "running")
        with anyio.fail_after(5):
            while agents.calls.get("hold") != 1:
                await anyio.sleep(0.005)
        host.stop()
        gate.set()  # the run ends inside the grace period
    assert await header_status(store_url, sub.run_id) == "completed"
    assert agents.calls == {"First": 1, "hold": 1, "Last": 1}
    with pytest.raises(NotAcceptingError):
        await host.submit(wf, "late", trigger="test", source="t")


async def test_runs_past_the_grace_period_are_checkpointed_and_resumed_on_the_next_start(
        serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    agents, gate = CountingAgents(), anyio.Event()
    wf = orch.add_workflow(gated(agents, gate))
    async with orch.serving(port=None, grace=0.05) as host:
        sub = await host.submit(wf, "in", trigger="test", source="t")
        with anyio.fail_after(5):
            while agents.calls.get("hold") != 1:
                await anyio.sleep(0.005)
    assert await header_status(store_url, sub.run_id) == "pending"  # suspended, not cancelled for good
    gate.set()
    async with orch.serving(port=None) as host:
        done = await status(host, sub.run_id, "completed")
    assert done["output"] == "in>First>hold>Last" and done["tasks_completed"] == 3
    assert agents.calls == {"First": 1, "hold": 2, "Last": 1}  # First was reused, not re-run


async def test_accepted_runs_that_never_started_start_on_the_next_start(serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    agents, gate = CountingAgents(), anyio.Event()
    wf = orch.add_workflow(gated(agents, gate))
    quick = orch.add_workflow(Workflow(name="quick", steps=[Task(name="Q", agent=agents["Q"])]))
    async with orch.serving(port=None, grace=0, max_running=1) as host:
        await host.submit(wf, "in", trigger="test", source="t")
        with anyio.fail_after(5):
            while agents.calls.get("hold") != 1:
                await anyio.sleep(0.005)
        queued = await host.submit(quick, {"n": 1}, trigger="test", source="t")
        await anyio.wait_all_tasks_blocked()
        assert host.waiting == 1 and host.in_flight == 1
        assert (await host.run_status(queued.run_id) or {})["status"] == "pending"
    assert await header_status(store_url, queued.run_id) == "pending" and "Q" not in agents.calls
    gate.set()
    async with orch.serving(port=None) as host:
        done = await status(host, queued.run_id, "completed")
    assert done["output"] == "{'n': 1}>Q" and agents.calls["Q"] == 1


async def test_a_run_a_dead_process_left_running_is_resumed(serving_runtime: Any, store_url: str) -> None:
    agents = CountingAgents()
    agents.failing.add("Second")
    wf = Workflow(name="w", steps=[Task(name="First", agent=agents["First"]), Task(name="Second", agent=agents["Second"])],
                  checkpointing={"enabled": True, "storage": store_url})
    first = await wf.run("x")
    store = await open_store(store_url)
    stored = await store.load(first.run_id)
    assert stored is not None
    await store.save_run(records.with_status(stored.header, "running"))  # as a killed process leaves it
    await store.close()
    agents.failing.clear()
    orch = Orchestrator(store=store_url)
    orch.add_workflow(wf)
    async with orch.serving(port=None) as host:
        done = await status(host, first.run_id, "completed")
    assert done["output"] == "x>First>Second" and agents.calls == {"First": 1, "Second": 2}


async def test_a_run_id_starts_one_run_with_or_without_a_store(serving_runtime: Any, store_url: str) -> None:
    for store in (store_url, None):
        orch = Orchestrator(store=store)
        agents = CountingAgents()
        wf = orch.add_workflow(Workflow(name="w", steps=[Task(name="A", agent=agents["A"])]))
        async with orch.serving(port=None) as host:
            subs = [await host.submit(wf, i, run_id="fixed-id", trigger="test", source="t") for i in range(3)]
            await status(host, "fixed-id", "completed")
        assert [s.created for s in subs] == [True, False, False]
        assert agents.calls == {"A": 1}


async def test_a_run_that_cannot_start_is_recorded_failed_not_retried_forever(bare_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    wf = orch.add_workflow(Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)], pattern="nonexistent"))
    async with orch.serving(port=None) as host:
        sub = await host.submit(wf, 1, trigger="test", source="t")
        with anyio.fail_after(5):
            while await header_status(store_url, sub.run_id) != "failed":
                await anyio.sleep(0.005)
    async with orch.serving(port=None) as host:
        assert host.waiting == 0 and host.in_flight == 0


class Ticker:
    """A trigger kind of its own: fires its workflow every few manual-clock seconds."""

    def __init__(self, orchestrator: Any, workflow: Workflow, *, every: float) -> None:
        self.orchestrator, self.workflow, self.every = orchestrator, workflow, every
        self.fired: list[str] = []

    async def serve(self, host: Any) -> None:
        while True:
            await host.clock.sleep_until(host.clock.time() + self.every)
            self.fired.append((await host.submit(self.workflow, None, trigger="ticker", source="t")).run_id)


async def test_triggers_are_served_added_while_serving_and_stopped_when_removed(serving_runtime: Any, clock: Any) -> None:
    started: list[Any] = []

    async def shared(host: Any, *, task_status: Any) -> None:
        started.append(host.triggers("shared"))
        task_status.started()
        await anyio.sleep_forever()

    class Plugin:
        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("ticker", Ticker)
            register("shared", lambda orch, wf, **o: object(), serve=shared)

    serving_runtime.register(Plugin(), "test-triggers")
    orch = Orchestrator()
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: "ok")])
    early = orch._add_trigger("ticker", wf, every=10)
    orch._add_trigger("shared", wf)
    orch._add_trigger("shared", wf)
    async with orch.serving(port=None):
        assert len(started) == 1 and len(started[0]) == 2  # one server for the kind, seeing both
        await clock.run_for(25)
        assert len(early.fired) == 2
        late = orch._add_trigger("ticker", wf, every=5)
        await clock.run_for(10)
        assert len(early.fired) == 3 and len(late.fired) == 2
        orch.remove_trigger(early)
        await clock.run_for(30)
        assert len(early.fired) == 3 and len(late.fired) == 8


async def test_add_trigger_serves_a_kind_of_another_plugin_and_refuses_unknown_kinds(
    serving_runtime: Any, clock: Any
) -> None:
    from pyagent import PluginNotInstalledError

    class Plugin:
        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("ticker", Ticker)

    serving_runtime.register(Plugin(), "test-ticker")
    orch = Orchestrator()
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: "ok")])
    ticker = orch.add_trigger("ticker", wf, every=10)
    assert isinstance(ticker, Ticker) and orch.triggers == [ticker] and orch.workflows == {"w": wf}
    with pytest.raises(TypeError):
        orch.add_trigger("ticker", wf, every=10, bogus=1)  # the factory checks its options now
    with pytest.raises(PluginNotInstalledError, match="tickr"):
        orch.add_trigger("tickr", wf, every=10)
    assert orch.triggers == [ticker]
    other = Orchestrator()
    with pytest.raises(TypeError):
        other.add_trigger("ticker", wf, every=10, bogus=1)
    assert other.triggers == [] and other.workflows == {}  # refused: nothing was added
    other.add_workflow(wf)
    with pytest.raises(ConfigurationError, match="already added"):  # another workflow named "w"
        other.add_trigger("ticker", Workflow(name="w", steps=[Task(name="B", agent=lambda x: x)]), every=1)
    assert other.triggers == []
    async with orch.serving(port=None):
        await clock.run_for(25)
    assert len(ticker.fired) == 2


def test_serve_runs_until_stopped_from_another_thread(serving_runtime: Any) -> None:
    orch = Orchestrator()
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda e: e.n + 1)])
    orch.on_event("go", workflow=wf)
    results: list[list[str]] = []
    stopped = threading.Event()

    def serve() -> None:
        anyio.run(lambda: orch.serve(port=None))
        stopped.set()

    thread = threading.Thread(target=serve)
    thread.start()
    for _ in range(500):
        if orch.host is not None and orch.host.accepting:
            break
        threading.Event().wait(0.01)
    results.append(orch.emit_sync("go", n=1))  # from this thread, into the serving loop
    orch.stop()
    assert stopped.wait(10)
    thread.join(10)
    assert len(results[0]) == 1 and wf.get_state().results == {"A": 2}


async def test_a_store_that_cannot_create_runs_is_refused_with_the_fix(serving_runtime: Any) -> None:
    class OldStore:
        url = "old://"

        def __init__(self, url: str) -> None:
            pass

        async def open(self) -> None: ...
        async def close(self) -> None: ...

    class Plugin:
        @hookimpl
        def pyagent_register_stores(self, register: Any) -> None:
            register("old", OldStore)

    serving_runtime.register(Plugin(), "old-store")
    orch = Orchestrator(store="old://x")
    with pytest.raises(ConfigurationError, match="has no create_run"):
        async with orch.serving(port=None):
            pass
    assert orch.host is None


async def test_serving_options_are_checked(serving_runtime: Any) -> None:
    orch = Orchestrator()
    with pytest.raises(ConfigurationError, match="grace"):
        async with orch.serving(grace=-1):
            pass
    with pytest.raises(ConfigurationError, match="max_running"):
        async with orch.serving(max_running=0):
            pass


async def test_skipped_records_and_pending_headers_read_as_history(serving_runtime: Any, store_url: str) -> None:
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)])
    store = await open_store(store_url)
    assert await store.create_run(records.pending_header(wf, "p1", {"a": 1}, trigger="t", source="s", at=10.0))
    assert await store.create_run(records.skipped_header(wf, "s1", at=20.0, reason="missed", trigger="t", source="s"))
    assert not await store.create_run(RunHeader("p1", "w", "pending", 1.0))
    found, value = records.queued_input((await store.load("p1")).header, "p1")  # type: ignore[union-attr]
    assert found and value == {"a": 1}
    await store.close()
    orch = Orchestrator(store=store_url)
    orch.add_workflow(wf)
    history = {r.run_id: r for r in await orch.aget_history()}
    assert history["p1"].status.value == "pending" and history["s1"].status.value == "skipped"
    assert history["s1"].error == "missed"
