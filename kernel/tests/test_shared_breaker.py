"""A circuit breaker shared through a store (``shared=True``), on the memory store.

Two workflow objects with the same name stand for two processes: each has its own
in-memory breaker, so whatever they agree on came through the store.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import CircuitOpenError, ConfigurationError, Task, Workflow
from pyagent.durability.store import BreakerRecord
from pyagent.hookspecs import hookimpl
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import Orchestrator
from pyagent.plugins import Runtime


def replica(service: Any, url: str, **breaker: Any) -> Workflow:
    """The workflow as one process of the cluster builds it."""
    config = {
        "failure_threshold": 3,
        "reset_timeout": 60,
        "half_open_requests": 1,
        "shared": True,
        "storage": url,
        **breaker,
    }
    return Workflow(
        name="Protected Flow", steps=[Task(name="call", agent=service)], circuit_breaker=config
    )


def circuit(wf: Workflow) -> dict[str, Any]:
    state = wf.get_state().circuit
    assert state is not None
    return state


async def stored(url: str, rt: Runtime) -> BreakerRecord | None:
    store = rt.driver("stores", "memory")(url)
    record: BreakerRecord | None = await store.get_breaker("Protected Flow")
    return record


@pytest.mark.anyio
async def test_failures_are_counted_across_processes_and_open_in_one_is_open_in_all(
    drt: Runtime, store_url: str, service: Any
) -> None:
    a, b = replica(service, store_url), replica(service, store_url)
    assert (await a.run()).status is TaskStatus.FAILED
    assert (await b.run()).status is TaskStatus.FAILED
    assert circuit(b)["consecutive_failures"] == 2 and circuit(b)["shared"] is True
    events: list[Any] = []
    await a.run(on_event=events.append)  # the third failure, counted across both: it opens
    assert [(e.data["from"], e.data["to"]) for e in events if e.kind == "circuit.changed"] == [
        ("closed", "open")
    ]
    assert service.calls == 3

    refused = await b.run()  # b never saw a failure of its own open the breaker
    assert isinstance(refused.exception, CircuitOpenError)
    assert "open after 3 consecutive failed runs" in (refused.error or "")
    assert service.calls == 3
    assert circuit(b)["state"] == "open" and circuit(b)["rejected"] == 1
    assert b.get_metrics().rejected == 1
    record = await stored(store_url, drt)
    assert record is not None and record.state == "open" and record.times_opened == 1


@pytest.mark.anyio
async def test_a_success_anywhere_resets_the_count(
    drt: Runtime, store_url: str, service: Any
) -> None:
    a, b = replica(service, store_url), replica(service, store_url)
    await a.run()
    await a.run()
    service.healthy = True
    assert (await b.run()).ok
    service.healthy = False
    await a.run()
    await a.run()
    assert circuit(a)["state"] == "closed" and circuit(a)["consecutive_failures"] == 2


@pytest.mark.anyio
async def test_half_open_trials_are_limited_across_processes(drt: Runtime, store_url: str) -> None:
    gate = anyio.Event()
    calls = {"n": 0, "failing": True}

    async def service(x: Any) -> str:
        calls["n"] += 1
        if calls["failing"]:
            raise ConnectionError("down")
        await gate.wait()
        return "ok"

    a, b = (
        replica(service, store_url, half_open_requests=2),
        replica(service, store_url, half_open_requests=2),
    )
    c = replica(service, store_url, half_open_requests=2)
    for _ in range(3):
        await a.run()
    drt.clock.advance(60)  # type: ignore[attr-defined]
    calls["failing"] = False
    results: list[Any] = []

    async def run(wf: Workflow) -> None:
        results.append(await wf.run())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, a)
            tg.start_soon(run, b)
            while calls["n"] < 5:  # both trials are in flight, one from each "process"
                await anyio.sleep(0)
            extra = await c.run()  # a third process finds both trial slots taken
            assert isinstance(extra.exception, CircuitOpenError) and "half-open" in (
                extra.error or ""
            )
            record = await stored(store_url, drt)
            assert record is not None and record.state == "half_open" and record.trials == 2
            gate.set()
    assert [r.ok for r in results] == [True, True] and calls["n"] == 5
    record = await stored(store_url, drt)
    assert record is not None and record.state == "closed" and record.failures == 0


@pytest.mark.anyio
async def test_a_failed_trial_in_one_process_opens_it_for_all(
    drt: Runtime, store_url: str, service: Any
) -> None:
    a, b = replica(service, store_url), replica(service, store_url)
    for _ in range(3):
        await a.run()
    drt.clock.advance(60)  # type: ignore[attr-defined]
    trial = await b.run()
    assert trial.status is TaskStatus.FAILED and not isinstance(trial.exception, CircuitOpenError)
    assert isinstance((await a.run()).exception, CircuitOpenError)
    assert service.calls == 4


@pytest.mark.anyio
async def test_a_trial_whose_process_died_is_given_up_after_trial_timeout(
    drt: Runtime, store_url: str, service: Any
) -> None:
    a, b = replica(service, store_url, trial_timeout=120), replica(service, store_url, trial_timeout=120)
    for _ in range(3):
        await a.run()
    drt.clock.advance(60)
    # A process takes the trial slot and dies before the run ends: it never reports.
    from pyagent.durability.breakers import shared_breaker

    dead = shared_breaker(a, drt.clock, None)
    ticket, _, refusal = await dead.admit()
    assert ticket is not None and ticket.trial and refusal is None
    assert isinstance((await b.run()).exception, CircuitOpenError)  # the slot is taken
    drt.clock.advance(119)
    assert isinstance((await b.run()).exception, CircuitOpenError)  # still taken: it may be a long run
    drt.clock.advance(1)
    service.healthy = True
    events: list[Any] = []
    assert (await b.run(on_event=events.append)).ok
    reasons = [e.data["reason"] for e in events if e.kind == "circuit.changed"]
    assert "did not report" in reasons[0] and circuit(b)["state"] == "closed"
    assert await dead.release(ticket, False) == []  # the late outcome belongs to a past generation
    assert circuit(a)["state"] == "closed"


@pytest.mark.anyio
async def test_a_cancelled_trial_gives_its_slot_back(drt: Runtime, store_url: str) -> None:
    started = anyio.Event()
    state = {"failing": True}

    async def service(x: Any) -> str:
        if state["failing"]:
            raise ConnectionError("down")
        started.set()
        await anyio.sleep_forever()
        return "never"

    a = replica(service, store_url)
    for _ in range(3):
        await a.run()
    drt.clock.advance(60)
    state["failing"] = False
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            await started.wait()
            record = await stored(store_url, drt)
            assert record is not None and record.trials == 1
            tg.cancel_scope.cancel()
    record = await stored(store_url, drt)
    assert record is not None and record.state == "half_open" and record.trials == 0


@pytest.mark.anyio
async def test_the_orchestrator_store_is_used_when_no_storage_is_given(
    drt: Runtime, store_url: str, service: Any
) -> None:
    wf = Workflow(
        name="Protected Flow",
        steps=[Task(name="call", agent=service)],
        circuit_breaker={"failure_threshold": 1, "shared": True},
    )
    orchestrator = Orchestrator(store=store_url)
    orchestrator.add_workflow(wf)
    await orchestrator.run_workflow("Protected Flow")
    record = await stored(store_url, drt)
    assert record is not None and record.state == "open"


@pytest.mark.anyio
async def test_shared_without_a_store_is_a_clear_error(drt: Runtime, service: Any) -> None:
    wf = Workflow(
        name="w", steps=[Task(name="call", agent=service)], circuit_breaker={"shared": True}
    )
    with pytest.raises(ConfigurationError, match="shared=True keeps the breaker in a store"):
        await wf.run()
    assert service.calls == 0


def test_storage_without_shared_is_refused() -> None:
    with pytest.raises(ValidationError, match="add shared=True"):
        Workflow(name="w", circuit_breaker={"storage": "memory://x"})
    with pytest.raises(ValidationError, match="store_timeout"):
        Workflow(name="w", circuit_breaker={"shared": True, "store_timeout": 0})


class Plain:
    """A store from before shared breakers: no get_breaker/swap_breaker."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Hanging(Plain):
    """A store that accepts a connection and then never answers."""

    async def get_breaker(self, name: str) -> Any:
        await anyio.sleep_forever()

    async def swap_breaker(self, record: Any, *, expected: int) -> bool:
        await anyio.sleep_forever()
        return False


class TestStores:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("hangdb", Hanging)
        register("plaindb", Plain)


@pytest.mark.anyio
async def test_an_unreachable_store_fails_open_to_the_process_breaker_within_store_timeout(
    drt: Runtime, caplog: pytest.LogCaptureFixture, service: Any
) -> None:
    drt.register(TestStores(), "test-stores")
    wf = replica(service, "hangdb://db", failure_threshold=2, store_timeout=0.2)
    caplog.set_level(logging.INFO, "pyagent.durable")
    began = time.monotonic()
    with anyio.fail_after(5):
        first = await wf.run()
        second = await wf.run()  # within RETRY_AFTER: this process's breaker, no wait at all
        third = await wf.run()
    assert first.status is TaskStatus.FAILED and second.status is TaskStatus.FAILED
    assert isinstance(third.exception, CircuitOpenError)  # this process's own breaker opened
    assert service.calls == 2
    # The store was waited on for one store_timeout at admission and one at release, no more.
    assert time.monotonic() - began < 1.5
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1 and "uses its own breaker" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_a_store_without_breaker_methods_is_a_clear_error(drt: Runtime, service: Any) -> None:
    drt.register(TestStores(), "test-stores")
    with pytest.raises(ConfigurationError, match=r"cannot keep a shared breaker.*set shared=False"):
        await replica(service, "plaindb://db").run()
    assert service.calls == 0


class Counting:
    """The memory store, counting the breaker calls made on it."""

    calls: list[str] = []

    def __init__(self, url: str) -> None:
        from pyagent._defaults.memory_store import MemoryStore

        self._inner = MemoryStore("memory://counting-" + url.split("://", 1)[1])
        self.url = url

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in ("get_breaker", "swap_breaker"):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            Counting.calls.append(name)
            return await method(*args, **kwargs)

        return counted


class CountingStores:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("countdb", Counting)


@pytest.mark.anyio
async def test_a_breaker_that_is_not_shared_never_calls_the_store(drt: Runtime) -> None:
    drt.register(CountingStores(), "counting")
    Counting.calls = []
    wf = Workflow(
        name="w",
        steps=[Task(name="call", agent=lambda x: "ok")],
        circuit_breaker={"failure_threshold": 2},
        checkpointing={"storage": "countdb://a"},
    )
    for _ in range(3):
        assert (await wf.run()).ok
    assert Counting.calls == []
    shared = Workflow(
        name="s",
        steps=[Task(name="call", agent=lambda x: "ok")],
        circuit_breaker={"failure_threshold": 2, "shared": True},
        checkpointing={"storage": "countdb://b"},
    )
    for _ in range(3):
        assert (await shared.run()).ok
    # Healthy and closed: one read at admission and one at the end, nothing written.
    assert Counting.calls == ["get_breaker"] * 6
