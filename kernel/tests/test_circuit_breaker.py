"""The circuit breaker, on controlled time: closed → open → half-open → closed/open."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import CircuitOpenError, Task, Workflow
from pyagent.model.events import Event
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import Orchestrator
from pyagent.plugins import Runtime


@pytest.fixture
def rt(drt: Runtime) -> Runtime:
    return drt


def protected(service: Any, **breaker: Any) -> Workflow:
    config = {"failure_threshold": 3, "reset_timeout": 60, "half_open_requests": 1, **breaker}
    return Workflow(name="Protected Flow", steps=[Task(name="call", agent=service)], circuit_breaker=config)


def test_seed_5_3_circuit_breaker_as_written(rt: Runtime) -> None:
    workflow = Workflow(
        name="Protected Flow",
        circuit_breaker={
            "failure_threshold": 5,
            "reset_timeout": 60,
            "half_open_requests": 3
        }
    )
    assert workflow.circuit_breaker is not None
    assert workflow.circuit_breaker.failure_threshold == 5
    assert workflow.get_state().circuit["state"] == "closed"  # type: ignore[index]
    assert workflow.get_metrics().circuit_state == "closed"


@pytest.mark.parametrize("bad", [
    {"failure_threshold": 0}, {"reset_timeout": 0}, {"reset_timeout": -5},
    {"half_open_requests": 0}, {"failure_treshold": 3},
])
def test_bad_breaker_settings_are_clear_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        Workflow(name="w", circuit_breaker=bad)


@pytest.mark.anyio
async def test_opens_after_consecutive_failures_and_refuses_without_calling_agents(rt: Runtime, service: Any) -> None:
    wf = protected(service)
    events: list[Event] = []
    for _ in range(3):
        result = await wf.run(on_event=events.append)
        assert result.status is TaskStatus.FAILED
    assert service.calls == 3
    assert wf.get_state().circuit["state"] == "open"  # type: ignore[index]

    refused = await wf.run(on_event=events.append)
    assert refused.status is TaskStatus.FAILED
    assert isinstance(refused.exception, CircuitOpenError)
    assert "open after 3 consecutive failed runs" in (refused.error or "")
    assert service.calls == 3  # no agent was called
    # Every task is listed, none started.
    assert refused.tasks and all(r.status is TaskStatus.PENDING and r.started_at is None
                                 for r in refused.tasks.values())
    changes = [e for e in events if e.kind == "circuit.changed"]
    assert [(e.data["from"], e.data["to"]) for e in changes] == [("closed", "open")]
    metrics = wf.get_metrics()
    assert metrics.circuit_state == "open" and metrics.rejected == 1 and metrics.total_executions == 3


@pytest.mark.anyio
async def test_a_success_resets_the_consecutive_failure_count(rt: Runtime, service: Any) -> None:
    wf = protected(service)
    for healthy in (False, False, True, False, False):
        service.healthy = healthy
        await wf.run()
    assert wf.get_state().circuit["state"] == "closed"  # type: ignore[index]
    assert wf.get_state().circuit["consecutive_failures"] == 2  # type: ignore[index]


@pytest.mark.anyio
async def test_half_open_after_reset_timeout_and_a_successful_trial_closes_it(rt: Runtime, service: Any) -> None:
    wf = protected(service)
    for _ in range(3):
        await wf.run()
    rt.clock.advance(59.9)
    assert isinstance((await wf.run()).exception, CircuitOpenError)
    rt.clock.advance(0.1)
    assert wf.get_state().circuit["state"] == "half_open"  # type: ignore[index]
    service.healthy = True
    events: list[Event] = []
    trial = await wf.run(on_event=events.append)
    assert trial.ok and service.calls == 4
    assert [(e.data["from"], e.data["to"]) for e in events if e.kind == "circuit.changed"] == [
        ("open", "half_open"), ("half_open", "closed")]
    assert wf.get_metrics().circuit_state == "closed"


@pytest.mark.anyio
async def test_a_failed_trial_opens_it_again_for_another_reset_timeout(rt: Runtime, service: Any) -> None:
    wf = protected(service)
    for _ in range(3):
        await wf.run()
    rt.clock.advance(60)
    trial = await wf.run()
    assert trial.status is TaskStatus.FAILED and not isinstance(trial.exception, CircuitOpenError)
    assert wf.get_state().circuit["state"] == "open"  # type: ignore[index]
    rt.clock.advance(30)
    assert isinstance((await wf.run()).exception, CircuitOpenError)
    assert service.calls == 4
    rt.clock.advance(30)
    service.healthy = True
    assert (await wf.run()).ok


@pytest.mark.anyio
async def test_half_open_lets_exactly_n_concurrent_trials_through(rt: Runtime) -> None:
    gate = anyio.Event()
    started = {"n": 0}
    failing = {"on": True}

    async def service(x: Any) -> str:
        if failing["on"]:
            raise ConnectionError("down")
        started["n"] += 1
        await gate.wait()
        return "ok"

    wf = protected(service, half_open_requests=2)
    for _ in range(3):
        await wf.run()
    rt.clock.advance(60)
    failing["on"] = False
    results: list[Any] = []

    async def one() -> None:
        results.append(await wf.run())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(one)
            while started["n"] < 2:
                await anyio.sleep(0)
            # Both trials are in flight: a third run is refused at once.
            extra = await wf.run()
            assert isinstance(extra.exception, CircuitOpenError)
            assert "half-open" in (extra.error or "")
            assert wf.get_state().circuit["trials_in_flight"] == 2  # type: ignore[index]
            gate.set()
    assert [r.ok for r in results] == [True, True]
    assert started["n"] == 2
    assert wf.get_state().circuit["state"] == "closed"  # type: ignore[index]


@pytest.mark.anyio
async def test_half_open_needs_every_trial_to_succeed(rt: Runtime, service: Any) -> None:
    wf = protected(service, half_open_requests=2)
    for _ in range(3):
        await wf.run()
    rt.clock.advance(60)
    service.healthy = True
    assert (await wf.run()).ok
    assert wf.get_state().circuit["state"] == "half_open"  # type: ignore[index]
    service.healthy = False
    assert (await wf.run()).status is TaskStatus.FAILED
    assert wf.get_state().circuit["state"] == "open"  # type: ignore[index]


@pytest.mark.anyio
async def test_breaker_is_shared_by_runs_through_the_orchestrator_but_not_across_workflows(
        rt: Runtime, service: Any) -> None:
    wf = protected(service)
    other = Workflow(name="Other", steps=[Task(name="call", agent=lambda x: "fine")],
                     circuit_breaker={"failure_threshold": 1})
    orchestrator = Orchestrator()
    orchestrator.add_workflow(wf)
    orchestrator.add_workflow(other)
    await wf.run()
    await orchestrator.run_workflow("Protected Flow")
    await wf.run()
    refused = await orchestrator.run_workflow("Protected Flow")
    assert isinstance(refused.exception, CircuitOpenError)
    assert (await orchestrator.run_workflow("Other")).ok
    history = orchestrator.get_history(workflow="Protected Flow", status="failed")
    assert len(history) == 4 and "circuit breaker" in (history[0].error or "")


@pytest.mark.anyio
async def test_cancelled_runs_do_not_count_as_failures(rt: Runtime) -> None:
    async def hangs(x: Any) -> str:
        await anyio.sleep_forever()
        return "never"

    wf = Workflow(name="w", steps=[Task(name="t", agent=hangs)], circuit_breaker={"failure_threshold": 1})
    with anyio.move_on_after(0.05):
        await wf.run()
    assert wf.get_state().circuit["state"] == "closed"  # type: ignore[index]
    assert wf.get_state().circuit["consecutive_failures"] == 0  # type: ignore[index]
