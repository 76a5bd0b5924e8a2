"""Parallel pattern: concurrency, bounds, reducers, failure policies."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, agent
from pyagent.orchestrator import ExecutionPattern, Task, TaskStatus, Workflow

pytestmark = pytest.mark.anyio


def wf(steps: list[Task], **kw: Any) -> Workflow:
    return Workflow(name="Multi-Source Research", pattern=ExecutionPattern.PARALLEL, steps=steps, **kw)


async def test_branches_run_concurrently_and_get_the_same_input(runtime: Any) -> None:
    started = 0
    all_started = anyio.Event()

    async def branch(x: str) -> str:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        with anyio.fail_after(5):  # would deadlock if branches ran one at a time
            await all_started.wait()
        return f"{x}!"

    steps = [Task(name=n, agent=agent(branch, name=n)) for n in ("News", "Social", "Papers")]
    result = await wf(steps).run("topic")
    assert result.ok
    assert result.output == {"News": "topic!", "Social": "topic!", "Papers": "topic!"}


async def test_reducer_gets_outputs_in_step_order_sync_and_async(runtime: Any) -> None:
    calls: list[list[str]] = []

    async def slow(x: Any) -> str:
        await anyio.sleep(0.02)
        return "slow"

    def merge(results: dict[str, Any]) -> str:
        calls.append(list(results))
        return "+".join(results.values())

    async def amerge(results: dict[str, Any]) -> int:
        return len(results)

    steps = [Task(name="first", agent=slow), Task(name="second", agent=lambda x: "fast")]
    assert (await wf(steps, reducer=merge).run()).output == "slow+fast"
    assert calls == [["first", "second"]]  # step order, not completion order
    assert (await wf(steps, reducer=amerge).run()).output == 2


async def test_max_concurrency_bounds_running_branches(runtime: Any) -> None:
    running = peak = 0

    async def branch(x: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.005)
        running -= 1

    steps = [Task(name=f"b{i}", agent=branch) for i in range(12)]
    result = await wf(steps, max_concurrency=3).run()
    assert result.ok
    assert peak == 3


async def test_fail_fast_cancels_siblings(runtime: Any) -> None:
    async def hang(x: Any) -> None:
        await anyio.sleep_forever()

    def boom(x: Any) -> None:
        raise RuntimeError("source down")

    steps = [Task(name="hang", agent=hang), Task(name="boom", agent=boom)]
    with anyio.fail_after(5):
        result = await wf(steps).run()
    assert result.status is TaskStatus.FAILED
    assert result.error == "task 'boom' failed: RuntimeError: source down"
    assert result.tasks["hang"].status is TaskStatus.CANCELLED
    assert result.tasks["boom"].status is TaskStatus.FAILED


async def test_collect_keeps_partial_results_and_errors(runtime: Any) -> None:
    steps = [
        Task(name="ok1", agent=lambda x: 1),
        Task(name="bad", agent=lambda x: 1 / 0),
        Task(name="ok2", agent=lambda x: 2),
    ]
    result = await wf(steps, failure_policy="collect", reducer=lambda r: sum(r.values())).run()
    assert result.ok
    assert result.output == 3
    assert set(result.errors) == {"bad"}
    assert result.tasks["bad"].status is TaskStatus.FAILED


async def test_collect_with_every_branch_failing_fails_the_run(runtime: Any) -> None:
    steps = [Task(name="a", agent=lambda x: 1 / 0), Task(name="b", agent=lambda x: [][1])]
    result = await wf(steps, failure_policy="collect").run()
    assert result.status is TaskStatus.FAILED
    assert "every branch failed" in (result.error or "")


async def test_reducer_that_raises_is_a_clear_failed_result(runtime: Any) -> None:
    def merge_results(results: dict[str, Any]) -> Any:
        raise KeyError("missing")

    steps = [Task(name="a", agent=lambda x: 1)]
    result = await wf(steps, reducer=merge_results).run()
    assert result.status is TaskStatus.FAILED
    assert "reducer merge_results raised KeyError" in (result.error or "")
    assert "fix the reducer" in (result.error or "")


async def test_slow_branch_does_not_block_unrelated_one(runtime: Any) -> None:
    finished: list[str] = []
    release = anyio.Event()

    async def slow(x: Any) -> str:
        await release.wait()
        finished.append("slow")
        return "slow"

    async def fast(x: Any) -> str:
        finished.append("fast")
        release.set()
        return "fast"

    with anyio.fail_after(5):
        result = await wf([Task(name="slow", agent=slow), Task(name="fast", agent=fast)]).run()
    assert result.ok and finished == ["fast", "slow"]


def test_dependencies_are_rejected_for_parallel(runtime: Any) -> None:
    a = Task(name="a", agent=lambda x: 1)
    b = Task(name="b", agent=lambda x: 1, dependencies=[a])
    with pytest.raises(ConfigurationError, match=r"use pattern=ExecutionPattern\.GRAPH"):
        anyio.run(wf([a, b]).run)


async def test_large_fan_out_completes(runtime: Any) -> None:
    steps = [Task(name=f"b{i}", agent=lambda x: 1) for i in range(2000)]
    result = await wf(steps, reducer=lambda r: sum(r.values())).run()
    assert result.output == 2000


class Abort(BaseException):
    """Not an Exception: what a framework or the interpreter raises to stop everything."""


@pytest.mark.parametrize("max_concurrency", [None, 2])
async def test_base_exception_in_a_branch_cancels_siblings_and_propagates(runtime: Any, max_concurrency: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    async def stop(x: Any) -> None:
        await started.wait()
        raise Abort("stop now")

    flow = wf([Task(name="hang", agent=hang), Task(name="stop", agent=stop)], max_concurrency=max_concurrency)
    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as info:
        await flow.run()
    assert info.group_contains(Abort)
    state = flow.get_state()
    assert state.running == [] and state.status is TaskStatus.FAILED
    assert state.tasks["hang"].status is TaskStatus.CANCELLED
    assert state.tasks["stop"].status is TaskStatus.FAILED


def test_reducer_that_cannot_take_the_outputs_is_refused_before_anything_runs(runtime: Any) -> None:
    ran: list[str] = []

    def merge(first: Any, second: Any) -> Any:
        return first

    flow = wf([Task(name="a", agent=lambda x: ran.append("a"))], reducer=merge)
    with pytest.raises(ConfigurationError, match=r"reducer merge\(first, second\) cannot be called with one "
                                                 r"argument, .*\{task name: output\}"):
        anyio.run(flow.run)
    assert ran == []
    # Extra parameters with defaults, *args and bound methods are fine.
    assert anyio.run(wf([Task(name="a", agent=lambda x: 1)], reducer=lambda r, n=2: r["a"] * n).run).output == 2
    assert anyio.run(wf([Task(name="a", agent=lambda x: 1)], reducer=lambda *r: len(r)).run).output == 1


@pytest.mark.parametrize("policy", ["fail_fast", "collect"])
async def test_conditional_step_runs_one_branch_on_the_shared_input(runtime: Any, policy: str) -> None:
    from pyagent.orchestrator import ConditionalTask

    gate = ConditionalTask(name="gate", condition=lambda ctx: ctx.result > 0,
                           if_true=Task(name="positive", agent=lambda x: f"+{x}"),
                           if_false=Task(name="negative", agent=lambda x: f"-{x}"))
    seen: list[Any] = []
    flow = wf([Task(name="echo", agent=lambda x: x), gate], failure_policy=policy,
              reducer=lambda outputs: seen.append(dict(outputs)) or len(outputs))
    result = await flow.run(5)
    assert result.ok and result.output == 2
    assert seen == [{"echo": 5, "positive": "+5"}]
    assert result.tasks["negative"].status is TaskStatus.SKIPPED


async def test_collect_with_a_failing_condition_keeps_the_other_branches(runtime: Any) -> None:
    from pyagent.orchestrator import ConditionalTask

    def broken(ctx: Any) -> bool:
        raise ValueError("no score")

    gate = ConditionalTask(name="gate", condition=broken, if_true=Task(name="yes", agent=lambda x: "yes"))
    result = await wf([Task(name="echo", agent=lambda x: x), gate], failure_policy="collect").run(1)
    assert result.ok and result.output == {"echo": 1}
    assert result.errors == {"gate": "task 'gate' failed: ValueError: no score"}
    assert result.tasks["gate"].status is TaskStatus.FAILED
