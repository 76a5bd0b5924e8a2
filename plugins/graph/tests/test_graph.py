"""Graph pattern: dependency scheduling, inputs, conditionals, failures, validation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from pyagent import agent
from pyagent.orchestrator import ConditionalTask, ExecutionPattern, Task, TaskStatus, Workflow

pytestmark = pytest.mark.anyio


async def test_each_task_starts_as_soon_as_its_dependencies_complete(runtime: Any) -> None:
    """C depends only on A: it must start while B (also after A) is still blocked."""
    b_release = anyio.Event()
    order: list[str] = []

    async def a(x: Any) -> str:
        order.append("A")
        return "a"

    async def b(x: Any) -> str:
        order.append("B start")
        await b_release.wait()
        return "b"

    async def c(x: Any) -> str:
        order.append("C")
        b_release.set()
        return "c"

    A = Task(name="A", agent=a)
    B = Task(name="B", agent=b, dependencies=[A])
    C = Task(name="C", agent=c, dependencies=["A"])
    D = Task(name="D", agent=lambda deps: deps, dependencies=[B, C])
    with anyio.fail_after(5):
        result = await Workflow(name="g", steps=[A, B, C, D]).run()
    assert result.ok
    assert order[0] == "A" and "C" in order and order.index("C") < len(order)
    assert result.output == {"B": "b", "C": "c"}  # several deps -> dict input


async def test_inputs_by_dependency_count(runtime: Any) -> None:
    root = Task(name="root", agent=lambda x: x * 2)
    one = Task(name="one", agent=lambda x: x + 1, dependencies=[root])
    result = await Workflow(name="g", steps=[root, one]).run(5)
    assert result.outputs == {"root": 10, "one": 11}
    assert result.output == 11  # single sink


async def test_multiple_sinks_give_a_dict(runtime: Any) -> None:
    r = Task(name="r", agent=lambda x: 1)
    s1 = Task(name="s1", agent=lambda x: x + 1, dependencies=[r])
    s2 = Task(name="s2", agent=lambda x: x + 2, dependencies=[r])
    result = await Workflow(name="g", pattern=ExecutionPattern.GRAPH, steps=[r, s1, s2]).run()
    assert result.output == {"s1": 2, "s2": 3}


async def test_failure_cancels_running_and_leaves_unstarted_pending(runtime: Any) -> None:
    async def hang(x: Any) -> None:
        await anyio.sleep_forever()

    a = Task(name="a", agent=hang)
    b = Task(name="b", agent=lambda x: 1 / 0)
    c = Task(name="c", agent=lambda x: x, dependencies=[b])
    with anyio.fail_after(5):
        result = await Workflow(name="g", steps=[a, b, c]).run()
    assert result.status is TaskStatus.FAILED
    assert result.tasks["a"].status is TaskStatus.CANCELLED
    assert result.tasks["b"].status is TaskStatus.FAILED
    assert result.tasks["c"].status is TaskStatus.PENDING and result.tasks["c"].started_at is None


async def test_collect_skips_only_dependents_of_failures(runtime: Any) -> None:
    a = Task(name="a", agent=lambda x: 1 / 0)
    b = Task(name="b", agent=lambda x: "b-out", dependencies=[a])
    c = Task(name="c", agent=lambda x: "c-out")
    result = await Workflow(name="g", steps=[a, b, c], failure_policy="collect").run()
    assert result.ok
    assert result.tasks["b"].status is TaskStatus.SKIPPED
    assert "dependency 'a' failed" in (result.tasks["b"].reason or "")
    assert result.outputs == {"c": "c-out"}


async def test_conditional_in_graph_and_skip_propagation(runtime: Any) -> None:
    class Score:
        def __init__(self, s: float) -> None:
            self.score = s

    analyze = Task(name="Analyze", agent=lambda x: Score(x))
    cond = ConditionalTask(
        name="Gate",
        condition=lambda ctx: ctx.result.score > 0.8,
        if_true=Task(name="Approve", agent=lambda s: "approved"),
        if_false=Task(name="Escalate", agent=lambda s: "escalated"),
        dependencies=[analyze],
    )
    notify = Task(name="Notify", agent=lambda out: f"notify: {out}", dependencies=["Gate"])
    audit = Task(name="AuditApproval", agent=lambda out: f"audit {out}", dependencies=["Approve"])
    wf = Workflow(name="g", steps=[analyze, cond, notify, audit])
    high = await wf.run(0.9)
    assert high.outputs["Notify"] == "notify: approved"
    assert high.outputs["AuditApproval"] == "audit approved"
    assert high.tasks["Escalate"].status is TaskStatus.SKIPPED
    low = await wf.run(0.1)
    assert low.outputs["Notify"] == "notify: escalated"
    assert low.tasks["Approve"].status is TaskStatus.SKIPPED
    assert low.tasks["AuditApproval"].status is TaskStatus.SKIPPED


def test_cycles_and_unknown_names_rejected_at_build() -> None:
    a = Task(name="a", agent=lambda x: x, dependencies=["c"])
    b = Task(name="b", agent=lambda x: x, dependencies=["a"])
    c = Task(name="c", agent=lambda x: x, dependencies=["b"])
    with pytest.raises(ValidationError, match=r"dependency cycle in workflow 'g': a -> c -> b -> a"):
        Workflow(name="g", steps=[a, b, c])
    with pytest.raises(ValidationError, match="depends on 'nope', which is not a step"):
        Workflow(name="g", steps=[Task(name="x", agent=lambda x: x, dependencies=["nope"])])


def test_cycle_through_a_conditional_branch_is_rejected_before_running(runtime: Any) -> None:
    ran: list[str] = []
    x = Task(name="X", agent=lambda v: ran.append("X"), dependencies=["Approve"])
    gate = ConditionalTask(condition=lambda c: True, if_true=Task(name="Approve", agent=lambda v: ran.append("A")),
                           dependencies=[x], name="Gate")
    with pytest.raises(ValidationError, match="dependency cycle"):  # when the workflow is built
        Workflow(name="g", pattern="graph", steps=[x, gate])
    # The pattern checks again when a run starts (steps may be changed after building).
    wf = Workflow(name="g", pattern="graph", steps=[x, gate.model_copy(update={"dependencies": []})])
    wf.steps[1].dependencies.append("X")
    with pytest.raises(Exception, match="dependency cycle"):
        anyio.run(wf.run)
    assert ran == []


async def test_max_concurrency_in_graph(runtime: Any) -> None:
    running = peak = 0

    async def work(x: Any) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.005)
        running -= 1
        return 1

    steps = [Task(name=f"t{i}", agent=agent(work, name=f"t{i}")) for i in range(8)]
    result = await Workflow(name="g", pattern="graph", steps=steps, max_concurrency=2).run()
    assert result.ok and peak == 2


class Abort(BaseException):
    """Not an Exception: what a framework or the interpreter raises to stop everything."""


async def test_base_exception_in_a_task_cancels_the_others_and_propagates(runtime: Any) -> None:
    started = anyio.Event()

    async def hang(x: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    async def stop(x: Any) -> None:
        await started.wait()
        raise Abort("stop now")

    root = Task(name="root", agent=lambda x: x)
    flow = Workflow(name="g", steps=[root, Task(name="hang", agent=hang, dependencies=[root]),
                                     Task(name="stop", agent=stop, dependencies=[root]),
                                     Task(name="after", agent=lambda x: x, dependencies=["stop"])])
    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as info:
        await flow.run()
    assert info.group_contains(Abort)
    state = flow.get_state()
    assert state.running == [] and state.status is TaskStatus.FAILED
    assert state.tasks["hang"].status is TaskStatus.CANCELLED
    assert state.tasks["stop"].status is TaskStatus.FAILED
    assert state.pending == ["after"]


async def test_deep_chain_listed_backwards_runs_in_dependency_order(runtime: Any) -> None:
    n = 3000
    steps = [Task(name=f"t{i}", agent=lambda x: (x or 0) + 1, dependencies=[f"t{i - 1}"] if i else [])
             for i in range(n)]
    result = await Workflow(name="deep", steps=steps[::-1]).run()
    assert result.ok, result.error
    assert result.output == n


def _random_dag(seed: int) -> dict[str, list[str]]:
    import random

    rng = random.Random(seed)
    names = [f"t{i}" for i in range(rng.randint(2, 30))]
    return {n: rng.sample(names[:i], k=rng.randint(0, min(i, 3))) for i, n in enumerate(names)}


async def _run_logged(deps: dict[str, list[str]], seed: int, **kw: Any) -> list[tuple[str, str]]:
    """Run the DAG (steps shuffled) with agents that log start/end and yield three times between."""
    import random

    log: list[tuple[str, str]] = []

    def worker(name: str) -> Any:
        async def work(x: Any) -> str:
            log.append(("start", name))
            for _ in range(3):
                await anyio.sleep(0)
            log.append(("end", name))
            return name

        return agent(work, name=name)

    order = list(deps)
    random.Random(seed).shuffle(order)
    steps = [Task(name=n, agent=worker(n), dependencies=deps[n]) for n in order]
    with anyio.fail_after(10):
        result = await Workflow(name=f"dag{seed}", pattern="graph", steps=steps, **kw).run()
    assert result.ok, result.error
    assert set(result.outputs) == set(deps)
    return log


@pytest.mark.parametrize("seed", range(40))
async def test_random_dags_start_each_task_after_its_dependencies_and_as_soon_as_ready(runtime: Any, seed: int) -> None:
    deps = _random_dag(seed)
    log = await _run_logged(deps, seed)
    at = {event: i for i, event in enumerate(log)}
    for task, ds in deps.items():
        start = at[("start", task)]
        assert all(at[("end", d)] < start for d in ds), f"{task} started before a dependency finished"
        # Every task takes the same number of scheduling steps, so a ready task must have started
        # before any task that started after it became ready can finish: independent work overlaps.
        ready = max((at[("end", d)] for d in ds), default=-1)
        for other in deps:
            if other != task and at[("start", other)] > ready:
                assert start < at[("end", other)], f"{task} was ready but waited for {other} to finish"


@pytest.mark.parametrize("seed", range(10))
async def test_random_dags_with_max_concurrency_keep_order_and_bound(runtime: Any, seed: int) -> None:
    deps = _random_dag(seed)
    log = await _run_logged(deps, seed, max_concurrency=2)
    at = {event: i for i, event in enumerate(log)}
    for task, ds in deps.items():
        assert all(at[("end", d)] < at[("start", task)] for d in ds)
    running = peak = 0
    for kind, _ in log:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2


def test_a_reducer_is_refused_instead_of_ignored(runtime: Any) -> None:
    from pyagent import ConfigurationError

    a = Task(name="a", agent=lambda x: 1)
    b = Task(name="b", agent=lambda x: 2, dependencies=[a])
    with pytest.raises(ConfigurationError, match=r"reducer= only applies to the parallel pattern"):
        anyio.run(Workflow(name="g", steps=[a, b], reducer=lambda r: r).run)


async def test_fail_fast_starts_no_dependent_after_a_failure_on_any_backend(runtime: Any) -> None:
    """A dependent whose dependency finished as a sibling failed must not run its agent.

    On trio a task started in an already-cancelled group runs until its first checkpoint, and a
    plain function agent has none; the scheduler finishes ``boom`` and ``ready`` in the same
    step in either order, so the scenario is repeated.
    """
    ran: list[int] = []

    async def boom(x: Any) -> None:
        await anyio.sleep(0)
        raise RuntimeError("source down")

    async def ready(x: Any) -> str:
        await anyio.sleep(0)
        return "ready"

    for attempt in range(30):
        wf = Workflow(name="g", steps=[
            Task(name="boom", agent=boom), Task(name="ready", agent=ready),
            Task(name="after", agent=lambda x, n=attempt: ran.append(n), dependencies=["ready"]),
        ])
        result = await wf.run()
        assert result.status is TaskStatus.FAILED
    assert ran == []
