"""Retries, timeouts and fallback agents, on controlled time (ManualClock: no real sleeps)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import Task, TaskFailedError, Workflow
from pyagent.model.events import Event
from pyagent.model.tasks import RetryConfig, TaskStatus
from pyagent.plugins import Runtime


def flaky(failures: int, exc: type[Exception] = ConnectionError, result: Any = "ok") -> Any:
    """An agent failing ``failures`` times, then returning ``result``."""
    calls = {"n": 0}

    def fn(x: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"failure {calls['n']}")
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def one_task(task: Task) -> Workflow:
    return Workflow(name=f"wf-{task.name}", steps=[task])


@pytest.fixture
def rt(drt: Runtime) -> Runtime:
    return drt


@pytest.mark.anyio
async def test_exponential_backoff_waits_double_each_time_and_records_every_attempt(rt: Runtime) -> None:
    agent = flaky(3)
    task = Task(name="Critical Operation", agent=agent, retry_config={
        "max_retries": 3, "backoff": "exponential", "initial_delay": 1.0, "max_delay": 30.0})
    events: list[Event] = []
    result = await one_task(task).run(on_event=events.append)
    assert result.ok and result.output == "ok"
    assert rt.clock.sleeps == [1.0, 2.0, 4.0]
    rec = result.tasks["Critical Operation"]
    assert [a.number for a in rec.attempts] == [1, 2, 3, 4]
    assert [a.error for a in rec.attempts] == [
        "ConnectionError: failure 1", "ConnectionError: failure 2", "ConnectionError: failure 3", None]
    assert rec.retries == 3
    retrying = [e for e in events if e.kind == "task.retrying"]
    assert [(e.data["attempt"], e.data["delay"]) for e in retrying] == [(1, 1.0), (2, 2.0), (3, 4.0)]
    assert retrying[0].data["error"] == "ConnectionError: failure 1"


@pytest.mark.anyio
async def test_max_delay_caps_the_backoff_and_the_last_error_fails_the_task(rt: Runtime) -> None:
    task = Task(name="t", agent=flaky(100), retry_config={
        "max_retries": 5, "initial_delay": 1, "max_delay": 5})
    result = await one_task(task).run()
    assert result.status is TaskStatus.FAILED
    assert rt.clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    rec = result.tasks["t"]
    assert len(rec.attempts) == 6 and all(a.error for a in rec.attempts)
    assert isinstance(result.exception, TaskFailedError)
    assert "failure 6" in (result.error or "")


@pytest.mark.anyio
@pytest.mark.parametrize(("backoff", "expected"), [
    ("linear", [2.0, 4.0, 6.0, 8.0]),
    ("constant", [2.0, 2.0, 2.0, 2.0]),
    ("exponential", [2.0, 4.0, 7.0, 7.0]),
])
async def test_backoff_kinds(rt: Runtime, backoff: str, expected: list[float]) -> None:
    task = Task(name="t", agent=flaky(4), retry_config={
        "max_retries": 4, "backoff": backoff, "initial_delay": 2, "max_delay": 7 if backoff == "exponential" else 60})
    result = await one_task(task).run()
    assert result.ok
    assert rt.clock.sleeps == expected
    cfg = task.retry_config
    assert cfg is not None and [cfg.delay(n) for n in range(1, 5)] == expected


@pytest.mark.anyio
async def test_jitter_stays_within_its_bounds_and_under_max_delay(rt: Runtime) -> None:
    task = Task(name="t", agent=flaky(200), retry_config={
        "max_retries": 200, "backoff": "constant", "initial_delay": 1.0, "jitter": 0.5, "max_delay": 60})
    await one_task(task).run()
    assert len(rt.clock.sleeps) == 200
    assert all(1.0 <= s <= 1.5 for s in rt.clock.sleeps)
    assert len(set(rt.clock.sleeps)) > 100  # really random

    rt.clock.sleeps.clear()
    capped = Task(name="c", agent=flaky(50), retry_config={
        "max_retries": 50, "backoff": "constant", "initial_delay": 1.0, "jitter": 5.0, "max_delay": 1.2})
    await one_task(capped).run()
    assert all(1.0 <= s <= 1.2 for s in rt.clock.sleeps)


@pytest.mark.anyio
async def test_only_errors_of_retry_on_types_are_retried(rt: Runtime) -> None:
    wrong = flaky(1, exc=ValueError)
    task = Task(name="t", agent=wrong, retry_config={"max_retries": 3, "retry_on": [ConnectionError, TimeoutError]})
    result = await one_task(task).run()
    assert result.status is TaskStatus.FAILED
    assert wrong.calls["n"] == 1 and rt.clock.sleeps == []
    assert "ValueError: failure 1" in (result.error or "")

    right = flaky(2, exc=ConnectionError)
    task = Task(name="u", agent=right, retry_config={"max_retries": 3, "retry_on": ConnectionError})
    result = await one_task(task).run()
    assert result.ok and right.calls["n"] == 3


def test_bad_retry_settings_are_clear_errors() -> None:
    with pytest.raises(ValidationError, match="exponential"):
        Task(name="t", agent=str, retry_config={"backoff": "fibonacci"})
    with pytest.raises(ValidationError, match="initial_delay"):
        Task(name="t", agent=str, retry_config={"initial_delay": -1})
    with pytest.raises(ValidationError, match="max_retries"):
        Task(name="t", agent=str, retry_config={"max_retries": -1})
    with pytest.raises(ValidationError, match="max_delay"):
        Task(name="t", agent=str, retry_config={"initial_delay": 10, "max_delay": 1})
    with pytest.raises(ValidationError, match="exception classes"):
        Task(name="t", agent=str, retry_config={"retry_on": ["ConnectionError"]})
    with pytest.raises(ValidationError, match="exception classes"):
        Task(name="t", agent=str, retry_config={"retry_on": KeyboardInterrupt})
    with pytest.raises(ValidationError, match="max_retrys"):
        Task(name="t", agent=str, retry_config={"max_retrys": 3})
    assert RetryConfig().backoff == "exponential"


def test_seed_5_1_retry_strategies_as_written(rt: Runtime) -> None:
    calls = []

    def my_agent(x: Any) -> str:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError("model endpoint unavailable")
        return "done"

    task = Task(
        name="Critical Operation",
        agent=my_agent,
        retry_config={
            "max_retries": 3,
            "backoff": "exponential",  # or "linear", "constant"
            "initial_delay": 1.0,
            "max_delay": 30.0
        }
    )
    result = Workflow(name="seed-5.1", steps=[task]).run_sync("go")
    assert result.ok and result.output == "done" and len(calls) == 3
    assert rt.clock.sleeps == [1.0, 2.0]


# -- timeouts ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_timeout_cancels_a_hanging_agent(rt: Runtime) -> None:
    async def hangs(x: Any) -> Any:
        await anyio.sleep_forever()

    task = Task(name="slow", agent=hangs, timeout=0.05)
    with anyio.fail_after(5):
        result = await one_task(task).run()
    assert result.status is TaskStatus.FAILED
    assert "task 'slow' (hangs) timed out after 0.05s" in (result.error or "")
    assert result.tasks["slow"].attempts[0].error.startswith("TimeoutError")  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_each_attempt_gets_its_own_timeout_and_timeouts_are_retried(rt: Runtime) -> None:
    calls = {"n": 0}

    async def slow_then_fast(x: Any) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            await anyio.sleep_forever()
        return "fast"

    task = Task(name="t", agent=slow_then_fast, timeout=0.05,
                retry_config={"max_retries": 2, "initial_delay": 0.5, "retry_on": TimeoutError})
    with anyio.fail_after(5):
        result = await one_task(task).run()
    assert result.ok and result.output == "fast"
    assert [a.error is not None for a in result.tasks["t"].attempts] == [True, True, False]
    assert rt.clock.sleeps == [0.5, 1.0]


@pytest.mark.anyio
async def test_an_agents_own_timeout_error_is_not_reported_as_the_task_timeout(rt: Runtime) -> None:
    def raises(x: Any) -> Any:
        raise TimeoutError("upstream API timed out")

    result = await one_task(Task(name="t", agent=raises, timeout=10)).run()
    assert "upstream API timed out" in (result.error or "")
    assert "after 10s" not in (result.error or "")


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="timeout"):
        Task(name="t", agent=str, timeout=0)


# -- fallback ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_substitute_runs_the_fallback_after_retries_are_exhausted(rt: Runtime) -> None:
    primary = flaky(100)

    def backup_agent(x: Any) -> str:
        return f"backup:{x}"

    task = Task(name="Research", agent=primary, fallback_agent=backup_agent,
                fallback_strategy="substitute", retry_config={"max_retries": 2, "initial_delay": 1})
    events: list[Event] = []
    result = await one_task(task).run("q", on_event=events.append)
    assert result.ok and result.output == "backup:q"
    rec = result.tasks["Research"]
    assert rec.agent == "backup_agent" and rec.fallback_strategy == "substitute"
    assert [a.agent for a in rec.attempts] == ["fn", "fn", "fn", "backup_agent"]
    assert rec.retries == 2
    assert rec.primary_error == "ConnectionError: failure 3"
    assert primary.calls["n"] == 3
    fallback = [e for e in events if e.kind == "task.fallback"]
    assert fallback and fallback[0].data["fallback"] == "backup_agent"


class PartialFailure(RuntimeError):
    def __init__(self, message: str, partial_output: Any) -> None:
        super().__init__(message)
        self.partial_output = partial_output


@pytest.mark.anyio
async def test_supplement_gives_the_fallback_the_error_and_partial_output_and_keeps_both(rt: Runtime) -> None:
    def primary(x: Any) -> Any:
        raise PartialFailure("ran out of tokens", partial_output={"found": ["a", "b"]})

    seen: dict[str, Any] = {}

    def helper(x: Any, ctx: Any) -> Any:
        seen["error"], seen["partial"] = ctx.error, ctx.partial_output
        return {"found": [*ctx.partial_output["found"], "c"]}

    task = Task(name="Research", agent=primary, fallback_agent=helper, fallback_strategy="supplement")
    result = await one_task(task).run("q")
    assert result.ok and result.output == {"found": ["a", "b", "c"]}
    assert isinstance(seen["error"], PartialFailure) and seen["partial"] == {"found": ["a", "b"]}
    rec = result.tasks["Research"]
    assert rec.primary_error == "PartialFailure: ran out of tokens"
    assert rec.primary_output == {"found": ["a", "b"]}
    assert rec.fallback_strategy == "supplement"
    assert [a.error for a in rec.attempts] == ["PartialFailure: ran out of tokens", None]


@pytest.mark.anyio
async def test_substitute_does_not_show_the_primary_error_to_the_fallback(rt: Runtime) -> None:
    seen = {}

    def backup(x: Any, ctx: Any) -> str:
        seen["error"] = ctx.error
        return "b"

    def primary(x: Any) -> Any:
        raise RuntimeError("x")

    result = await one_task(Task(name="t", agent=primary, fallback_agent=backup)).run()
    assert result.ok and seen["error"] is None


@pytest.mark.anyio
async def test_a_failing_fallback_fails_the_task_with_both_errors_recorded(rt: Runtime) -> None:
    def primary(x: Any) -> Any:
        raise RuntimeError("primary down")

    def backup(x: Any) -> Any:
        raise RuntimeError("backup down too")

    result = await one_task(Task(name="t", agent=primary, fallback_agent=backup)).run()
    assert result.status is TaskStatus.FAILED
    assert "backup down too" in (result.error or "")
    rec = result.tasks["t"]
    assert rec.primary_error == "RuntimeError: primary down"
    assert [a.error for a in rec.attempts] == ["RuntimeError: primary down", "RuntimeError: backup down too"]


def test_seed_5_2_fallback_agents_as_written(rt: Runtime) -> None:
    def primary_agent(x: Any) -> str:
        raise ConnectionError("primary provider is down")

    def backup_agent(x: Any) -> str:
        return f"backup answer to {x}"

    task = Task(
        name="Research",
        agent=primary_agent,
        fallback_agent=backup_agent,  # Used if primary fails
        fallback_strategy="substitute"  # or "supplement"
    )
    result = Workflow(name="seed-5.2", steps=[task]).run_sync("AI trends")
    assert result.ok and result.output == "backup answer to AI trends"


def test_unknown_fallback_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="substitute"):
        Task(name="t", agent=str, fallback_agent=str, fallback_strategy="merge")
