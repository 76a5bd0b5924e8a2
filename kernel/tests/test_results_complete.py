"""A result lists every task of the workflow, and history says everything about each."""

from __future__ import annotations

from typing import Any

import pytest

from pyagent import Task, TaskStatus, Workflow, hookimpl
from pyagent.durability.history import history_log
from pyagent.durability.stores import open_store
from pyagent.orchestrator import Orchestrator
from pyagent.plugins import Runtime

pytestmark = pytest.mark.anyio


class FirstOnly:
    """A pattern that runs only the first step and completes the run."""

    async def execute(self, run: Any) -> Any:
        return (await run.run_step(run.workflow.steps[0], run.input)).output


class FirstOnlyPlugin:
    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("first-only", FirstOnly())


def steps(*names: str, failing: str | None = None) -> list[Task]:
    def make(name: str) -> Any:
        def run(x: Any) -> Any:
            if name == failing:
                raise RuntimeError(f"{name} broke")
            return f"{x}>{name}"
        return run
    return [Task(name=n, agent=make(n)) for n in names]


async def test_a_failed_run_lists_the_tasks_it_never_started_as_pending(mini_runtime: Runtime) -> None:
    result = await Workflow(name="w", steps=steps("A", "B", "C", failing="B")).run("in")
    assert list(result.tasks) == ["A", "B", "C"]
    assert [r.status for r in result.tasks.values()] == [
        TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING]
    never = result.tasks["C"]
    assert never.started_at is None and never.attempt_count == 0 and never.attempts == []
    assert never.reason == "not started: the run failed before reaching it"
    assert result.tasks_completed == 1


async def test_a_completed_run_lists_the_tasks_its_pattern_did_not_run_as_skipped(
        bare_runtime: Runtime) -> None:
    bare_runtime.register(FirstOnlyPlugin(), "first-only")
    result = await Workflow(name="w", pattern="first-only", steps=steps("A", "B")).run("in")
    assert result.ok and result.output == "in>A"
    assert result.tasks["B"].status is TaskStatus.SKIPPED and result.tasks["B"].started_at is None


async def test_history_gives_every_task_its_duration(mini_runtime: Runtime, store_url: str) -> None:
    orchestrator = Orchestrator(store=store_url)
    wf = orchestrator.add_workflow(Workflow(name="w", steps=steps("A", "B", "C", failing="C")))
    await orchestrator.run_workflow(wf, "in")
    (record,) = await orchestrator.aget_history(workflow="w")
    durations = {t.name: t.duration for t in record.tasks}
    assert durations["A"] is not None and durations["A"] >= 0
    assert durations["C"] is not None  # failed, but it ran: it has a duration
    for task in record.tasks:
        assert task.duration == (task.finished_at - task.started_at
                                 if task.started_at is not None and task.finished_at is not None else None)


async def test_a_killed_runs_progress_read_from_checkpoints_has_durations(drt: Runtime, store_url: str) -> None:
    # A run still marked running in a store (its process died): history rebuilds its tasks from
    # the checkpoints, and those records have durations too. The process's death is played by
    # putting back the header a running run has: status running, no final summary.
    import dataclasses

    from pyagent.orchestrator import CheckpointConfig

    wf = Workflow(name="killed", checkpointing=CheckpointConfig(storage=store_url), steps=steps("A", "B"))
    result = await wf.run("in")
    store = await open_store(store_url)
    try:
        header = (await store.list_runs(workflow="killed"))[0]
        await store.save_run(dataclasses.replace(header, status="running", finished_at=None, payload=b""))
    finally:
        await store.close()
    history_log(drt).clear()  # a new process: only the store remembers the run
    (record,) = await Orchestrator(store=store_url).aget_history(workflow="killed")
    assert record.status is TaskStatus.RUNNING and record.run_id == result.run_id
    tasks = {t.name: t for t in record.tasks}
    assert set(tasks) == {"A", "B"}
    for name in ("A", "B"):
        assert tasks[name].duration is not None
        assert tasks[name].duration == tasks[name].finished_at - tasks[name].started_at  # type: ignore[operator]


async def test_a_resumed_run_keeps_its_first_start_and_lists_each_resume(drt: Runtime, store_url: str) -> None:
    from click.testing import CliRunner

    from pyagent.cli import main
    from pyagent.orchestrator import CheckpointConfig
    from pyagent.testing import CountingAgents

    agents = CountingAgents()
    agents.failing.update({"B", "C"})
    wf = Workflow(name="resumable", checkpointing=CheckpointConfig(storage=store_url),
                  steps=[Task(name=n, agent=agents[n]) for n in ("A", "B", "C")])
    first = await wf.run("in")
    assert first.status is TaskStatus.FAILED
    agents.failing.discard("B")
    second = await wf.resume_from(first.run_id)
    assert second.status is TaskStatus.FAILED and second.started_at > first.started_at
    agents.failing.clear()
    third = await wf.resume_from(first.run_id)
    assert third.ok and agents.calls == {"A": 1, "B": 2, "C": 2}

    for source in ("memory", "store"):
        if source == "store":
            history_log(drt).clear()  # only the store remembers now
        (record,) = await Orchestrator(store=store_url).aget_history(workflow="resumable")
        assert record.run_id == first.run_id and record.status is TaskStatus.COMPLETED
        assert record.started_at == first.started_at  # the first start, not a resume's
        assert record.timestamp.timestamp() == pytest.approx(first.started_at)
        assert record.resumes == [second.started_at, third.started_at]
        assert record.resumed
        assert record.duration == pytest.approx(third.finished_at - first.started_at)  # type: ignore[operator]
    import anyio.to_thread

    # The command line runs its own event loop: from a worker thread, as from a shell.
    out = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(main, ["history", "--storage", store_url]))
    assert "resumed 2 times:" in out.output, out.output
