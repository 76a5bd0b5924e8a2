"""Metrics (seed 8.1) and the audit trail (seed 8.3): in memory, and persisted through a store."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, Task, Workflow
from pyagent.durability.metrics import p95
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import Orchestrator
from pyagent.plugin import current_run
from pyagent.plugins import Runtime, set_runtime
from pyagent.plugins import Runtime as _Runtime


@pytest.fixture
def rt(drt: Runtime) -> Runtime:
    return drt


def research(fail: dict[str, bool]) -> Workflow:
    def researcher(x: Any) -> str:
        return "facts"

    def analyst(x: Any) -> str:
        if fail["on"]:
            raise RuntimeError("analysis model unavailable")
        return "analysis"

    return Workflow(name="Research Report", steps=[
        Task(name="Research", agent=researcher), Task(name="Analyze", agent=analyst),
        Task(name="Write", agent=lambda x: "report")])


def test_seed_8_1_workflow_metrics_as_written(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    fail = {"on": False}
    workflow = research(fail)
    workflow.run_sync()
    workflow.run_sync()
    fail["on"] = True
    workflow.run_sync()

    # Get workflow metrics
    metrics = workflow.get_metrics()
    print(metrics.total_executions)
    print(metrics.success_rate)
    print(metrics.avg_duration)
    print(metrics.task_breakdown)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3"
    assert abs(float(lines[1]) - 2 / 3) < 1e-9
    assert float(lines[2]) >= 0
    assert "Research" in lines[3] and "Analyze" in lines[3]
    analyze = metrics.task_breakdown["Analyze"]
    assert analyze.executions == 3 and analyze.successes == 2 and abs(analyze.success_rate - 2 / 3) < 1e-9
    assert metrics.task_breakdown["Write"].executions == 2  # never reached in the failed run
    assert analyze.p95_duration >= 0 and analyze.avg_duration >= 0


@pytest.mark.anyio
async def test_retries_and_fallbacks_are_counted_per_task(rt: Runtime) -> None:
    calls = {"n": 0}

    def flaky(x: Any) -> str:
        calls["n"] += 1
        if calls["n"] % 3:
            raise ConnectionError("blip")
        return "ok"

    wf = Workflow(name="w", steps=[
        Task(name="flaky", agent=flaky, retry_config={"max_retries": 2, "initial_delay": 0.1}),
        Task(name="fb", agent=lambda x: 1 / 0, fallback_agent=lambda x: "backup")])
    await wf.run()
    await wf.run()
    breakdown = wf.get_metrics().task_breakdown
    assert breakdown["flaky"].retries == 4 and breakdown["flaky"].success_rate == 1.0
    assert breakdown["fb"].fallbacks == 2 and breakdown["fb"].retries == 0


def test_p95_is_nearest_rank() -> None:
    assert p95([]) == 0.0
    assert p95([5.0]) == 5.0
    assert p95(list(range(1, 101))) == 95
    assert p95(list(range(1, 21))) == 19


@pytest.mark.anyio
async def test_durations_come_from_task_timing(rt: Runtime) -> None:
    async def waits(x: Any) -> str:
        await anyio.sleep(0.02)
        return "ok"

    wf = Workflow(name="w", steps=[Task(name="wait", agent=waits)])
    for _ in range(3):
        await wf.run()
    metrics = wf.get_metrics()
    assert 0.015 < metrics.task_breakdown["wait"].avg_duration < 1
    assert metrics.task_breakdown["wait"].p95_duration >= metrics.task_breakdown["wait"].avg_duration * 0.5
    assert metrics.avg_duration >= metrics.task_breakdown["wait"].avg_duration


def test_seed_8_3_audit_trail_as_written(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    orchestrator = Orchestrator()
    fail = {"on": True}
    wf = research(fail)
    orchestrator.add_workflow(wf)
    wf.run_sync()
    fail["on"] = False
    wf.run_sync()

    # Get execution history
    history = orchestrator.get_history(
        workflow="Research Report",
        since="2026-01-01",
        status="failed"
    )

    for execution in history:
        print(f"{execution.timestamp}: {execution.status}")
        print(f"  Tasks: {execution.tasks_completed}/{execution.tasks_total}")
        if execution.error:
            print(f"  Error: {execution.error}")

    out = capsys.readouterr().out.splitlines()
    assert len(history) == 1 and len(out) == 3
    assert out[0].endswith(": failed")
    assert out[1] == "  Tasks: 1/3"
    assert out[2] == "  Error: task 'Analyze' failed: RuntimeError: analysis model unavailable"
    assert isinstance(history[0].timestamp, dt.datetime) and history[0].timestamp.tzinfo is not None


@pytest.mark.anyio
async def test_history_filters_attempts_and_order(rt: Runtime) -> None:
    orchestrator = Orchestrator()
    fail = {"on": False}
    wf = research(fail)
    other = Workflow(name="Other", steps=[Task(name="x", agent=lambda x: 1)])
    orchestrator.add_workflow(wf)
    orchestrator.add_workflow(other)
    first = await wf.run()
    fail["on"] = True
    second = await wf.run()
    await other.run()
    everything = orchestrator.get_history()
    assert len(everything) == 3 and everything[0].workflow == "Other"  # newest first
    mine = orchestrator.get_history(workflow=wf)
    assert [e.run_id for e in mine] == [second.run_id, first.run_id]
    assert [e.status for e in mine] == [TaskStatus.FAILED, TaskStatus.COMPLETED]
    assert orchestrator.get_history(status="completed", workflow="Research Report")[0].run_id == first.run_id
    assert orchestrator.get_history(since=time.time() + 3600) == []
    assert len(orchestrator.get_history(since=dt.datetime.now() - dt.timedelta(hours=1))) == 3
    assert len(orchestrator.get_history(since=dt.date.today())) == 3
    assert len(orchestrator.get_history(limit=2)) == 2
    failed = mine[0]
    analyze = next(t for t in failed.tasks if t.name == "Analyze")
    assert analyze.status is TaskStatus.FAILED
    assert [a.error for a in analyze.attempts] == ["RuntimeError: analysis model unavailable"]
    assert (await orchestrator.aget_history(workflow="Other"))[0].tasks_completed == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"status": "exploded"}, "completed, failed"), ({"since": "yesterday"}, "ISO date"),
    ({"since": True}, "not a time"), ({"workflow": 42}, "workflow name"),
])
def test_bad_history_filters_are_clear_errors(rt: Runtime, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Orchestrator().get_history(**kwargs)


@pytest.mark.parametrize("limit", [-1, "10", 2.5, True])
@pytest.mark.parametrize("with_store", [False, True])
def test_a_bad_history_limit_is_a_clear_error(rt: Runtime, store_url: str, limit: Any, with_store: bool) -> None:
    orchestrator = Orchestrator(store=store_url if with_store else None)
    with pytest.raises(ConfigurationError, match=r"limit=.* is not a number of runs: pass a whole number >= 0"):
        orchestrator.get_history(limit=limit)


def test_a_history_limit_beyond_what_a_store_can_count_means_all(rt: Runtime, store_url: str) -> None:
    wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: x)], checkpointing={"storage": store_url})
    wf.run_sync(1)
    assert len(Orchestrator(store=store_url).get_history(limit=10**30)) == 1


@pytest.mark.anyio
async def test_handoffs_inside_a_run_are_in_its_history(rt: Runtime) -> None:
    def triage(x: Any) -> str:
        run = current_run()
        assert run is not None
        run.record_handoff("triage", "billing", reason="invoice question")
        return "routed"

    wf = Workflow(name="Support", steps=[Task(name="triage", agent=triage)])
    await wf.run()
    record = Orchestrator().get_history(workflow="Support")[0]
    assert [(h.from_agent, h.to_agent, h.reason) for h in record.handoffs] == [
        ("triage", "billing", "invoice question")]
    assert current_run() is None


@pytest.mark.anyio
async def test_history_persists_through_an_orchestrator_store(rt: Runtime, store_url: str) -> None:
    orchestrator = Orchestrator(store=store_url)
    fail = {"on": True}
    wf = research(fail)
    orchestrator.add_workflow(wf)
    failed = await orchestrator.run_workflow("Research Report")
    fail["on"] = False
    ok = await wf.run()  # a direct run of an added workflow is recorded too

    # A fresh runtime (as in another process): memory is empty, the store still answers.
    fresh = _Runtime(discover=False)
    previous = set_runtime(fresh)
    try:
        later = Orchestrator(store=store_url)
        history = await later.aget_history(workflow="Research Report", status="failed")
        # get_history is synchronous but works inside an event loop too (it queries in a thread).
        assert [e.run_id for e in later.get_history(status="failed")] == [failed.run_id]
        everything = later.get_history()
    finally:
        set_runtime(previous)
    assert [e.run_id for e in history] == [failed.run_id]
    assert [e.run_id for e in everything] == [ok.run_id, failed.run_id]
    rec = history[0]
    assert rec.tasks_completed == 1 and rec.tasks_total == 3 and "analysis model unavailable" in (rec.error or "")
    assert [(t.name, t.status.value) for t in rec.tasks] == [
        ("Research", "completed"), ("Analyze", "failed"), ("Write", "pending")]


def test_history_from_sync_code_reads_checkpoint_stores(rt: Runtime, store_url: str) -> None:
    wf = Workflow(name="cp", steps=[Task(name="a", agent=lambda x: 1)], checkpointing={"storage": store_url})
    result = wf.run_sync()
    previous = set_runtime(_Runtime(discover=False))
    try:
        orchestrator = Orchestrator()
        orchestrator.add_workflow(wf)
        history = orchestrator.get_history(workflow="cp")
    finally:
        set_runtime(previous)
    assert [(e.run_id, e.status) for e in history] == [(result.run_id, TaskStatus.COMPLETED)]


def test_per_task_figures_fold_lazily_and_across_batches(rt: Runtime) -> None:
    """Runs queue their results; a read, or a full batch, folds them — nothing is lost either way."""
    from pyagent.durability.metrics import PENDING_LIMIT

    calls = {"n": 0}

    def flaky(x: Any) -> int:
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            raise RuntimeError("every fourth call fails")
        return 1

    wf = Workflow(name="batches", steps=[Task(name="only", agent=flaky)])
    runs = PENDING_LIMIT + 8  # crosses one automatic fold, leaves some queued
    for _ in range(runs):
        anyio.run(wf.run)
    m = wf.get_metrics()
    assert m.total_executions == runs
    only = m.task_breakdown["only"]
    assert only.executions == runs
    assert only.failures == runs // 4
    assert m.success_rate == pytest.approx((runs - runs // 4) / runs)


@pytest.mark.anyio
@pytest.mark.parametrize("with_store", [False, True], ids=["memory", "store"])
async def test_a_cancelled_run_is_in_the_history_and_the_metrics(rt: Runtime, store_url: str,
                                                                 with_store: bool) -> None:
    started = anyio.Event()

    async def hangs(x: Any) -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"

    wf = Workflow(name="Cancelled", steps=[Task(name="first", agent=lambda x: "done"),
                                           Task(name="hangs", agent=hangs)])
    orchestrator = Orchestrator(store=store_url if with_store else None)
    orchestrator.add_workflow(wf)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wf.run)
            await started.wait()
            tg.cancel_scope.cancel()
    history = await orchestrator.aget_history(workflow="Cancelled")
    assert [(e.status, e.tasks_completed, e.tasks_total) for e in history] == [(TaskStatus.CANCELLED, 1, 2)]
    assert [t.status for t in history[0].tasks] == [TaskStatus.COMPLETED, TaskStatus.CANCELLED]
    assert orchestrator.get_history(status="cancelled")[0].run_id == history[0].run_id
    metrics = wf.get_metrics()
    assert (metrics.total_executions, metrics.cancelled, metrics.successful) == (1, 1, 0)
    assert metrics.task_breakdown["first"].executions == 1


@pytest.mark.anyio
async def test_a_damaged_history_record_in_a_store_is_listed_as_unreadable(rt: Runtime, store_url: str) -> None:
    """A damaged record no longer breaks the whole history: it is listed from the store's plain
    columns with the reason, and the readable runs are listed as usual."""
    from pyagent._defaults.memory_store import MemoryStore
    from pyagent.durability.codec import dumps, seal

    orchestrator = Orchestrator(store=store_url)
    wf = research({"on": False})
    orchestrator.add_workflow(wf)
    done = await orchestrator.run_workflow("Research Report")
    fine = await orchestrator.run_workflow("Research Report")
    header = MemoryStore(store_url)._runs[done.run_id]
    header.payload = seal(dumps({"v": 1, "run_id": done.run_id, "tasks": "not a list"}))
    previous = set_runtime(_Runtime(discover=False))  # only the store knows the run now
    try:
        history = await Orchestrator(store=store_url).aget_history()
    finally:
        set_runtime(previous)
    by_id = {e.run_id: e for e in history}
    assert set(by_id) == {done.run_id, fine.run_id}
    damaged = by_id[done.run_id]
    assert damaged.status is TaskStatus.COMPLETED and damaged.workflow == "Research Report"
    assert damaged.unreadable is not None and f"history of run {done.run_id}" in damaged.unreadable
    assert "damaged" in damaged.unreadable
    assert by_id[fine.run_id].unreadable is None and by_id[fine.run_id].tasks_completed == 3


@pytest.mark.anyio
async def test_a_run_resumed_to_completion_is_no_longer_listed_as_failed(rt: Runtime) -> None:
    fail = {"on": True}
    wf = research(fail)
    orchestrator = Orchestrator()
    orchestrator.add_workflow(wf)
    first = await wf.run()
    fail["on"] = False
    await wf.resume_from(wf.get_state())
    assert [(e.run_id, e.status) for e in orchestrator.get_history()] == [(first.run_id, TaskStatus.COMPLETED)]
    assert orchestrator.get_history(status="failed") == []
    assert [e.run_id for e in await orchestrator.aget_history(status="completed")] == [first.run_id]


def test_a_conditional_step_counts_once_in_tasks_total(rt: Runtime) -> None:
    from pyagent.orchestrator import ConditionalTask

    wf = Workflow(name="gate", steps=[
        Task(name="score", agent=lambda x: 0.9),
        ConditionalTask(condition=lambda ctx: ctx.result > 0.5,
                        if_true=Task(name="approve", agent=lambda x: "ok"),
                        if_false=Task(name="escalate", agent=lambda x: "esc")),
    ])
    anyio.run(wf.run)
    (record,) = Orchestrator().get_history(workflow="gate")
    assert (record.tasks_completed, record.tasks_total) == (2, 2)


@pytest.mark.anyio
async def test_history_lists_every_run_when_some_were_saved_under_another_key_or_none(
        rt: Runtime, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs written under another key, or under no key, no longer make the whole history fail:
    readable runs are listed as usual, unreadable ones from the store's columns with the reason."""
    pytest.importorskip("cryptography")
    from cryptography.fernet import Fernet

    ours, theirs = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    orchestrator = Orchestrator(store=store_url)
    wf = research({"on": False})
    orchestrator.add_workflow(wf)
    plain = await orchestrator.run_workflow("Research Report", run_id="plain")
    monkeypatch.setenv("PYAGENT_STATE_KEY", theirs)
    other = await orchestrator.run_workflow("Research Report", run_id="other-key")
    monkeypatch.setenv("PYAGENT_STATE_KEY", ours)
    mine = await orchestrator.run_workflow("Research Report", run_id="mine")
    assert plain.ok and other.ok and mine.ok
    previous = set_runtime(_Runtime(discover=False))  # only the store knows the runs now
    try:
        history = {e.run_id: e for e in await Orchestrator(store=store_url).aget_history()}
        assert set(history) == {"plain", "other-key", "mine"}
        assert history["mine"].unreadable is None and history["mine"].tasks_completed == 3
        assert "could not be decrypted" in (history["other-key"].unreadable or "")
        assert "is not encrypted, but PYAGENT_STATE_KEY is set" in (history["plain"].unreadable or "")
        for run_id in ("plain", "other-key"):
            e = history[run_id]
            assert (e.workflow, e.status, e.tasks) == ("Research Report", TaskStatus.COMPLETED, [])
        completed = await Orchestrator(store=store_url).aget_history(status="completed")
        assert {e.run_id for e in completed} == {"plain", "other-key", "mine"}
        monkeypatch.setenv("PYAGENT_STATE_ALLOW_PLAINTEXT", "1")
        history = {e.run_id: e for e in await Orchestrator(store=store_url).aget_history()}
        assert history["plain"].unreadable is None and history["plain"].tasks_completed == 3
    finally:
        set_runtime(previous)
