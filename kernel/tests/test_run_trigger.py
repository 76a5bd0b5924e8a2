"""Every run keeps how it first started (its trigger) in history, in the store and across resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError
from pyagent.durability.stores import open_store
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.serving import records
from pyagent.testing import CountingAgents

pytestmark = pytest.mark.anyio


async def stored_trigger(url: str, run_id: str) -> Any:
    from pyagent.durability.history import ExecutionRecord

    store = await open_store(url)
    try:
        stored = await store.load(run_id)
    finally:
        await store.close()
    assert stored is not None
    return ExecutionRecord.from_payload(stored.header.payload, run_id).trigger


async def until_status(host: Any, run_id: str, want: str) -> None:
    with anyio.fail_after(10):
        while (await host.run_status(run_id) or {}).get("status") != want:
            await anyio.sleep(0.005)


def flaky(agents: CountingAgents, url: str | None = None) -> Workflow:
    return Workflow(name="w", steps=[Task(name="First", agent=agents["First"]), Task(name="Second", agent=agents["Second"])],
                    checkpointing={"enabled": True, "storage": url} if url else None)


async def test_a_call_is_a_manual_run_in_memory_and_in_the_store(serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    orch.add_workflow(Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)]))
    result = await orch.run_workflow("w", 1)
    assert await stored_trigger(store_url, result.run_id) == {"kind": "manual"}
    (rec,) = [r for r in await orch.aget_history() if r.run_id == result.run_id]
    assert rec.trigger == {"kind": "manual"}
    tagged = await orch.run_workflow("w", 2, trigger={"kind": "event", "source": "tests"})
    assert await stored_trigger(store_url, tagged.run_id) == {"kind": "event", "source": "tests"}
    with pytest.raises(ConfigurationError, match=r"trigger='cron'.*'kind'"):
        await orch.run_workflow("w", 3, trigger="cron")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="plain values"):
        await orch.run_workflow("w", 3, trigger={"kind": "event", "source": object()})


async def test_an_event_run_is_an_event_run_served_or_not(serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda e: e.n)])
    orch.on_event("order.created", workflow=wf)
    (here,) = await orch.emit("order.created", n=1)  # not serving: runs right here
    assert await stored_trigger(store_url, here) == {"kind": "event", "source": "order.created"}
    async with orch.serving(port=None) as host:
        (served,) = await orch.emit("order.created", n=2)
        await until_status(host, served, "completed")
    assert await stored_trigger(store_url, served) == {"kind": "event", "source": "order.created"}


async def test_a_triggered_run_keeps_its_trigger_once_started_and_after_a_resume(
        serving_runtime: Any, store_url: str) -> None:
    agents = CountingAgents()
    agents.failing.add("Second")
    orch = Orchestrator(store=store_url)
    wf = orch.add_workflow(flaky(agents))
    async with orch.serving(port=None) as host:
        sub = await host.submit(wf, "x", trigger="webhook", source="/hooks/ci")
        await until_status(host, sub.run_id, "failed")
        # Started and failed: the record the run wrote over the queued one still says how it began.
        assert await stored_trigger(store_url, sub.run_id) == {"kind": "webhook", "source": "/hooks/ci"}
        agents.failing.clear()
        ended: list[Any] = []
        host.resume(wf, sub.run_id, on_finish=lambda run_id, result: ended.append(result))
        with pytest.raises(ConfigurationError, match="already going on here"):
            host.resume(wf, sub.run_id)
        with anyio.fail_after(10):
            while not ended:
                await anyio.sleep(0.005)
    assert ended[0].status.value == "completed" and ended[0].output == "x>First>Second"
    assert agents.calls == {"First": 1, "Second": 2}  # First reused, not re-run
    history = {r.run_id: r for r in await orch.aget_history()}
    rec = history[sub.run_id]
    assert rec.trigger == {"kind": "webhook", "source": "/hooks/ci"} and len(rec.resumes) == 1
    assert await stored_trigger(store_url, sub.run_id) == {"kind": "webhook", "source": "/hooks/ci"}


async def test_resume_needs_a_serving_host_with_a_store(serving_runtime: Any) -> None:
    from pyagent.errors import NotAcceptingError

    orch = Orchestrator()
    wf = orch.add_workflow(Workflow(name="w", steps=[Task(name="A", agent=lambda x: x)]))
    async with orch.serving(port=None) as host:
        with pytest.raises(ConfigurationError, match="needs the store"):
            host.resume(wf, "some-run")
    with pytest.raises(NotAcceptingError):
        host.resume(wf, "some-run")


async def test_a_queued_run_recovered_on_start_keeps_its_trigger(serving_runtime: Any, store_url: str) -> None:
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: f"{x}!")])
    store = await open_store(store_url)
    assert await store.create_run(records.pending_header(wf, "nightly@2026-03-02T08:00:00Z", "in",
                                                         trigger="cron", source="nightly"))
    await store.close()
    orch = Orchestrator(store=store_url)
    orch.add_workflow(wf)
    async with orch.serving(port=None) as host:
        await until_status(host, "nightly@2026-03-02T08:00:00Z", "completed")
    assert await stored_trigger(store_url, "nightly@2026-03-02T08:00:00Z") == {"kind": "cron", "source": "nightly"}


async def test_a_state_file_keeps_the_trigger_and_an_older_one_resumes_as_resume(
        serving_runtime: Any, tmp_path: Path) -> None:
    agents = CountingAgents()
    agents.failing.add("Second")
    orch = Orchestrator()
    wf = orch.add_workflow(flaky(agents))
    failed = await orch.run_workflow(wf, "x", trigger={"kind": "cron", "source": "nightly"})
    state = wf.get_state(failed.run_id)
    assert state.trigger == {"kind": "cron", "source": "nightly"}
    path = state.save(tmp_path / "run.json")
    agents.failing.clear()
    await wf.resume_from(path)
    resumed = [r for r in await orch.aget_history() if r.run_id == failed.run_id]
    assert resumed[0].trigger == {"kind": "cron", "source": "nightly"} and resumed[0].status.value == "completed"
    # A save from before runs kept their trigger: the resumed run is known only as resumed.
    state.trigger = None
    older = state.save(tmp_path / "older.json")
    again = CountingAgents()
    again.failing.add("Second")
    wf2 = Workflow(name="w", steps=[Task(name="First", agent=again["First"]), Task(name="Second", agent=again["Second"])])
    await wf2.resume_from(older)
    assert wf2.get_state().trigger == {"kind": "resume"}


async def test_checkpoints_carry_the_trigger_to_a_resume_from_the_store(serving_runtime: Any, store_url: str) -> None:
    agents = CountingAgents()
    agents.failing.add("Second")
    wf = flaky(agents, store_url)
    orch = Orchestrator()
    orch.add_workflow(wf)
    failed = await orch.run_workflow(wf, "x", trigger={"kind": "webhook", "source": "/in"})
    agents.failing.clear()
    done = await wf.resume_from(failed.run_id)
    assert done.status.value == "completed"
    assert await stored_trigger(store_url, failed.run_id) == {"kind": "webhook", "source": "/in"}
