"""orchestrator.on_event / emit / emit_sync: the kernel's own 'event' trigger."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, Event
from pyagent.model.events import EventPayload
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.testing import CountingAgents

pytestmark = pytest.mark.anyio


def flow(name: str, fn: Any) -> Workflow:
    return Workflow(name=name, steps=[Task(name="handle", agent=fn)])


async def test_emit_starts_every_matching_workflow_with_the_event_as_input(serving_runtime: Any) -> None:
    orch = Orchestrator()
    support = flow("support", lambda e: f"{e.priority}:{e['id']}")  # attributes and keys
    audit = flow("audit", lambda e: dict(e))
    orch.on_event("new_ticket", workflow=support, filter=lambda e: e.priority == "high")
    orch.on_event("new_ticket", workflow=audit)
    ids = await orch.emit("new_ticket", {"priority": "high", "id": 7})
    assert len(ids) == 2
    runs = {r.run_id: r for r in orch.get_history()}
    assert {runs[i].workflow for i in ids} == {"support", "audit"}
    assert support.get_state().results == {"handle": "high:7"}
    assert audit.get_state().results == {"handle": {"priority": "high", "id": 7}}
    # Filtered out: only the unfiltered subscription runs; keyword fields make the payload too.
    ids = await orch.emit("new_ticket", priority="low", id=8)
    assert [runs_wf for runs_wf in (r.workflow for r in orch.get_history() if r.run_id in ids)] == ["audit"]


async def test_a_filter_that_raises_starts_nothing_breaks_nobody_and_is_reported(serving_runtime: Any) -> None:
    seen: list[Event] = []
    orch = Orchestrator(monitors=[seen.append])
    agents = CountingAgents()
    orch.on_event("order", workflow=flow("fragile", agents["fragile"]), filter=lambda e: e.missing_field)
    orch.on_event("order", workflow=flow("sturdy", agents["sturdy"]), filter=lambda e: e.total > 10)
    ids = await orch.emit("order", {"total": 99})
    assert len(ids) == 1 and agents.calls == {"sturdy": 1}
    failed = [e for e in seen if e.kind == "event.filter_failed"]
    assert len(failed) == 1 and failed[0].workflow == "fragile"
    assert failed[0].data["event"] == "order" and "no field 'missing_field'" in failed[0].data["error"]


async def test_an_event_nobody_subscribes_to_is_counted_and_announced(serving_runtime: Any) -> None:
    seen: list[str] = []
    orch = Orchestrator(monitors=[lambda e: seen.append(e.kind)])
    orch.on_event("known", workflow=flow("w", lambda e: e))
    assert await orch.emit("unknown", {"x": 1}) == []
    assert await orch.emit("unknown") == []
    assert orch.unhandled_events == {"unknown": 2}
    assert seen.count("event.unhandled") == 2


def test_emit_sync_from_plain_code(serving_runtime: Any) -> None:
    orch = Orchestrator()
    wf = flow("w", lambda e: e.n * 2)
    orch.on_event("go", workflow=wf)
    ids = orch.emit_sync("go", n=21)
    assert len(ids) == 1 and wf.get_state().results == {"handle": 42}


async def test_subscriptions_pause_resume_and_remove(serving_runtime: Any) -> None:
    orch = Orchestrator()
    agents = CountingAgents()
    sub = orch.on_event("ping", workflow=flow("w", agents["w"]))
    sub.pause()
    assert await orch.emit("ping") == [] and agents.calls == {}
    sub.resume()
    assert len(await orch.emit("ping")) == 1
    sub.remove()
    assert sub not in orch.triggers
    assert await orch.emit("ping") == [] and orch.unhandled_events == {"ping": 1}


def test_bad_subscriptions_are_refused_when_made(serving_runtime: Any) -> None:
    orch = Orchestrator()
    wf = flow("w", lambda e: e)

    async def coroutine_filter(e: Any) -> bool:
        return True

    with pytest.raises(ConfigurationError, match="coroutine function"):
        orch.on_event("x", workflow=wf, filter=coroutine_filter)
    with pytest.raises(ConfigurationError, match="event name"):
        orch.on_event("", workflow=wf)
    with pytest.raises(ConfigurationError, match="not callable"):
        orch.on_event("x", workflow=wf, filter="priority == high")


async def test_an_event_input_survives_a_checkpoint_as_itself(serving_runtime: Any, store_url: str) -> None:
    """Resumed from its checkpoints, the run's input still reads fields as attributes."""
    seen: list[Any] = []
    fail = {"on": True}

    def second(x: Any) -> Any:
        if fail["on"]:
            raise RuntimeError("down")
        return x

    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda e: seen.append(e) or e.kind),
                                   Task(name="b", agent=second)],
                  checkpointing={"enabled": True, "storage": store_url})
    orch = Orchestrator()
    orch.on_event("e", workflow=wf)
    (run_id,) = await orch.emit("e", kind="refund")
    fail["on"] = False
    result = await wf.resume_from(run_id)
    assert result.ok and result.output == "refund"
    from pyagent.durability.replay import load_run

    state, _ = await load_run(store_url, run_id)
    assert isinstance(state.input, EventPayload) and state.input.kind == "refund"


async def test_emit_while_serving_returns_at_once_and_records_the_runs(serving_runtime: Any, store_url: str) -> None:
    orch = Orchestrator(store=store_url)
    gate = anyio.Event()

    async def wait(e: Any) -> Any:
        await gate.wait()
        return e.n

    wf = flow("w", wait)
    orch.on_event("go", workflow=wf)
    async with orch.serving(port=None) as host:
        ids = await orch.emit("go", n=1)
        assert (await host.run_status(ids[0]) or {})["status"] in ("pending", "running")
        from pyagent.durability.stores import open_store

        store = await open_store(store_url)
        assert await store.load(ids[0]) is not None  # recorded before emit returned
        gate.set()
        with anyio.fail_after(5):
            while (await host.run_status(ids[0]) or {}).get("status") != "completed":
                await anyio.sleep(0.01)
        assert (await host.run_status(ids[0]) or {})["output"] == 1
