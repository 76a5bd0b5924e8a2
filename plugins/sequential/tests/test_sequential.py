"""Sequential pattern: pass-forward, fail fast, continue_on_error, conditional branches, events."""

from __future__ import annotations

from typing import Any

import pytest

from pyagent import agent
from pyagent.orchestrator import (
    ConditionalTask,
    ExecutionPattern,
    Orchestrator,
    Task,
    TaskStatus,
    Workflow,
)

pytestmark = pytest.mark.anyio


def step(name: str, fn: Any, **kw: Any) -> Task:
    return Task(name=name, agent=agent(fn, name=name.lower()), **kw)


async def test_output_passes_forward_and_results_are_kept_by_name(runtime: Any) -> None:
    wf = Workflow(
        name="Content Pipeline",
        pattern=ExecutionPattern.SEQUENTIAL,
        steps=[
            step("Research", lambda topic: f"notes({topic})"),
            step("Analyze", lambda notes: f"analysis({notes})"),
            step("Write", lambda a: f"article({a})"),
        ],
    )
    result = await wf.run("AI")
    assert result.status is TaskStatus.COMPLETED
    assert result.output == "article(analysis(notes(AI)))"
    assert result.outputs == {
        "Research": "notes(AI)",
        "Analyze": "analysis(notes(AI))",
        "Write": "article(analysis(notes(AI)))",
    }
    assert [t.status for t in result.tasks.values()] == [TaskStatus.COMPLETED] * 3


async def test_async_agents_and_context(runtime: Any) -> None:
    seen: dict[str, Any] = {}

    async def first(x: int) -> int:
        return x + 1

    async def second(x: int, ctx: Any) -> int:
        seen["results"] = dict(ctx.results)
        seen["task"] = ctx.task.name
        seen["result"] = ctx.result
        ctx.state["touched"] = True
        return x * 10

    wf = Workflow(name="w", steps=[step("A", first), step("B", second)])
    result = await wf.run(1)
    assert result.output == 20
    assert seen == {"results": {"A": 2}, "task": "B", "result": 2}


async def test_first_failure_stops_the_workflow(runtime: Any) -> None:
    ran: list[str] = []

    def boom(x: Any) -> Any:
        ran.append("B")
        raise ValueError("bad input")

    def never(x: Any) -> Any:
        ran.append("C")
        return x

    wf = Workflow(name="w", steps=[step("A", lambda x: 1), step("B", boom), step("C", never)])
    result = await wf.run()
    assert result.status is TaskStatus.FAILED
    assert "task 'B' failed: ValueError: bad input" in (result.error or "")
    assert ran == ["B"]
    assert result.tasks["B"].status is TaskStatus.FAILED
    assert result.tasks["C"].status is TaskStatus.PENDING  # never started
    assert result.tasks["C"].started_at is None and "failed before reaching it" in (result.tasks["C"].reason or "")
    assert result.outputs == {"A": 1}


async def test_continue_on_error_steps_over_a_failure(runtime: Any) -> None:
    wf = Workflow(
        name="w",
        steps=[
            step("A", lambda x: 5),
            step("B", lambda x: 1 / 0, continue_on_error=True),
            step("C", lambda x: x + 1),
        ],
    )
    result = await wf.run()
    assert result.ok
    assert result.output == 6  # B's failure passes A's output on
    assert result.tasks["B"].status is TaskStatus.FAILED
    assert "ZeroDivisionError" in result.errors["B"]


@pytest.mark.parametrize(("score", "taken", "skipped"), [(0.9, "Approve", "Escalate"), (0.3, "Escalate", "Approve")])
async def test_conditional_task_runs_one_branch(runtime: Any, score: float, taken: str, skipped: str) -> None:
    class Analysis:
        def __init__(self, score: float) -> None:
            self.score = score

    wf = Workflow(
        name="Conditional Flow",
        steps=[
            Task(name="Analyze", agent=lambda x: Analysis(score)),
            ConditionalTask(
                condition=lambda ctx: ctx.result.score > 0.8,
                if_true=Task(name="Approve", agent=lambda a: f"approved {a.score}"),
                if_false=Task(name="Escalate", agent=lambda a: f"escalated {a.score}"),
            ),
        ],
    )
    result = await wf.run()
    assert result.ok
    assert result.output == {"Approve": f"approved {score}", "Escalate": f"escalated {score}"}[taken]
    assert result.tasks[taken].status is TaskStatus.COMPLETED
    assert result.tasks[skipped].status is TaskStatus.SKIPPED
    assert skipped not in result.outputs


async def test_async_condition_and_condition_error(runtime: Any) -> None:
    async def cond(ctx: Any) -> bool:
        return bool(ctx.result)

    ok = Workflow(name="w", steps=[
        Task(name="A", agent=lambda x: 1),
        ConditionalTask(condition=cond, if_true=Task(name="T", agent=lambda x: "t")),
    ])
    assert (await ok.run()).output == "t"

    bad = Workflow(name="w2", steps=[
        Task(name="A", agent=lambda x: None),
        ConditionalTask(condition=lambda ctx: ctx.result.score > 1, if_true=Task(name="T", agent=lambda x: "t"),
                        name="check"),
    ])
    result = await bad.run()
    assert result.status is TaskStatus.FAILED
    assert "check" in (result.error or "") and "AttributeError" in (result.error or "")


async def test_on_task_complete_callback_and_monitor_failure_never_fails_run(runtime: Any) -> None:
    done: list[str] = []

    def broken_monitor(event: Any) -> None:
        raise RuntimeError("monitor down")

    orch = Orchestrator(monitors=[broken_monitor])
    orch.add_workflow(Workflow(name="Research Report", steps=[step("Research", lambda x: 1), step("Write", lambda x: 2)]))
    result = await orch.run_workflow("Research Report", on_task_complete=lambda t: done.append(t.name))
    assert result.ok
    assert done == ["Research", "Write"]
    assert runtime.monitor_errors > 0


async def test_events_cover_every_transition_in_order(runtime: Any) -> None:
    seen: list[tuple[str, str | None]] = []
    wf = Workflow(name="w", steps=[step("A", lambda x: 1), step("B", lambda x: 2)])
    await wf.run(on_event=lambda e: seen.append((e.kind, e.task)))
    assert seen == [
        ("workflow.started", None),
        ("task.started", "A"),
        ("task.completed", "A"),
        ("task.started", "B"),
        ("task.completed", "B"),
        ("workflow.completed", None),
    ]


def test_run_sync_from_plain_code(runtime: Any) -> None:
    wf = Workflow(name="w", steps=[step("A", lambda x: (x or 0) + 1)])
    assert wf.run_sync(41).output == 42


def test_dependency_on_a_later_step_is_refused_before_anything_runs(runtime: Any) -> None:
    import anyio

    from pyagent import ConfigurationError

    ran: list[str] = []
    report = step("Report", lambda x: ran.append("Report"), dependencies=["Stats"])
    stats = step("Stats", lambda x: ran.append("Stats"))
    wf = Workflow(name="w", pattern=ExecutionPattern.SEQUENTIAL, steps=[report, stats])
    with pytest.raises(ConfigurationError, match=r"'Report' depends on 'Stats', which comes after it .*"
                                                 r"ExecutionPattern\.GRAPH"):
        anyio.run(wf.run)
    assert ran == []
    # Dependencies on earlier steps are what the order already guarantees.
    ok = Workflow(name="w", pattern="sequential", steps=[step("A", lambda x: 1), step("B", lambda x: x + 1, dependencies=["A"])])
    assert anyio.run(ok.run).output == 2


def test_parallel_only_settings_are_refused_instead_of_ignored(runtime: Any) -> None:
    import anyio

    from pyagent import ConfigurationError

    steps = [step("A", lambda x: 1)]
    with pytest.raises(ConfigurationError, match=r"reducer= only applies to the parallel pattern"):
        anyio.run(Workflow(name="w", steps=steps, reducer=lambda r: r).run)
    with pytest.raises(ConfigurationError, match=r"failure_policy='collect' .* continue_on_error=True"):
        anyio.run(Workflow(name="w", steps=steps, failure_policy="collect").run)
