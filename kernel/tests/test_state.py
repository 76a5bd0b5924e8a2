"""Workflow state: inspect at any moment, save versioned JSON, resume; bad files change nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyagent import StateError, Task, Workflow
from pyagent.durability.codec import register_serializer, unregister_serializer
from pyagent.model.events import Event
from pyagent.model.tasks import TaskStatus
from pyagent.orchestrator import WorkflowState
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents


@pytest.fixture
def rt(drt: Runtime) -> Runtime:
    return drt


def report(agents: Agents, name: str = "Research Report") -> Workflow:
    return Workflow(name=name, steps=[Task(name=n, agent=agents[n]) for n in ("Research", "Analyze", "Write", "Review")])


def test_state_before_any_run_is_all_pending(rt: Runtime) -> None:
    state = report(Agents()).get_state()
    assert state.status == "pending" and state.run_id is None
    assert state.pending == ["Research", "Analyze", "Write", "Review"]
    assert state.completed == [] and state.current_task is None


@pytest.mark.anyio
async def test_state_while_running_seen_from_another_task(rt: Runtime) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def analyst(x: Any) -> str:
        started.set()
        await release.wait()
        return "analysis"

    wf = Workflow(name="Research Report", steps=[
        Task(name="Research", agent=lambda x: "facts"),
        Task(name="Analyze", agent=analyst),
        Task(name="Write", agent=lambda x: "draft"),
        Task(name="Review", agent=lambda x: "final"),
    ])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wf.run)
            await started.wait()
            state = wf.get_state()
            assert state.status == "running"
            assert state.current_task == "Analyze"
            assert state.completed == ["Research"]
            assert state.pending == ["Write", "Review"]
            assert state.running == ["Analyze"]
            assert state.results == {"Research": "facts"}
            release.set()
    after = wf.get_state()
    assert after.status == "completed" and after.current_task is None
    assert after.completed == ["Research", "Analyze", "Write", "Review"] and after.pending == []
    assert after.run_id == state.run_id


def test_seed_6_1_workflow_state_as_written(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    agents = Agents()
    agents.failing.add("Write")
    workflow = report(agents)
    first = workflow.run_sync("topic")
    assert first.status is TaskStatus.FAILED

    # Check state
    state = workflow.get_state()
    print(state.status)        # "running"
    print(state.current_task)  # "Analyze"
    print(state.completed)     # ["Research"]
    print(state.pending)       # ["Write", "Review"]

    # Persist state
    state.save("workflow_state.json")

    # Resume from state
    agents.failing.clear()
    result = workflow.resume_from("workflow_state.json")

    out = capsys.readouterr().out.splitlines()
    assert out == ["failed", "None", "['Research', 'Analyze']", "['Review']"]
    assert state.failed == ["Write"]
    assert result.ok and result.output == "topic>Research>Analyze>Write>Review"
    assert agents.calls == {"Research": 1, "Analyze": 1, "Write": 2, "Review": 1}
    assert result.run_id == first.run_id
    assert [n for n, t in result.tasks.items() if t.reused] == ["Research", "Analyze"]
    assert result.tasks["Research"].status is TaskStatus.COMPLETED


@pytest.mark.anyio
async def test_resume_inside_an_event_loop_returns_an_awaitable_and_emits_task_reused(
        rt: Runtime, tmp_path: Path) -> None:
    agents = Agents()
    agents.failing.add("Review")
    wf = report(agents)
    await wf.run("x")
    path = wf.get_state().save(tmp_path / "s.json")
    agents.failing.clear()
    events: list[Event] = []
    result = await wf.resume_from(path, on_event=events.append)
    assert result.ok
    reused = [e.task for e in events if e.kind == "task.reused"]
    assert reused == ["Research", "Analyze", "Write"]
    assert agents.calls["Research"] == 1 and agents.calls["Review"] == 2


@pytest.mark.anyio
async def test_ctx_state_and_outputs_of_many_types_survive_save_and_resume(rt: Runtime, tmp_path: Path) -> None:
    value = {"tuple": (1, 2), "set": {3}, "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
             "day": dt.date(2026, 1, 1), "money": Decimal("1.10"), "raw": b"\x00\xff", 7: "int key",
             "nested": [{"__pyagent__": "not a tag"}], "float": 1.5, "none": None}
    seen: dict[str, Any] = {}
    fail = {"on": True}

    def first(x: Any, ctx: Any) -> Any:
        ctx.state["counter"] = 41
        return value

    def second(x: Any, ctx: Any) -> Any:
        if fail["on"]:
            raise RuntimeError("not yet")
        seen["input"], seen["counter"] = x, ctx.state["counter"]
        return "done"

    wf = Workflow(name="types", steps=[Task(name="first", agent=first), Task(name="second", agent=second)])
    await wf.run()
    path = wf.get_state().save(tmp_path / "types.json")
    loaded = WorkflowState.load(path)
    assert loaded.results["first"] == value
    assert loaded.shared == {"counter": 41}
    fail["on"] = False
    result = await wf.resume_from(str(path))
    assert result.ok and seen == {"input": value, "counter": 41}


class Report:
    def __init__(self, title: str) -> None:
        self.title = title


def test_non_json_output_is_a_clear_error_at_save_time_and_nothing_is_written(rt: Runtime, tmp_path: Path) -> None:
    wf = Workflow(name="w", steps=[Task(name="Write", agent=lambda x: {"report": [Report("q3")]})])
    wf.run_sync()
    target = tmp_path / "state.json"
    target.write_text("previous content")
    with pytest.raises(StateError) as err:
        wf.get_state().save(target)
    message = str(err.value)
    assert "output of task 'Write'" in message and "['report'][0]" in message
    assert "Report" in message and "register_serializer" in message
    assert target.read_text() == "previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_a_registered_serializer_round_trips_a_custom_type(rt: Runtime, tmp_path: Path) -> None:
    register_serializer(Report, lambda r: {"title": r.title}, lambda d: Report(d["title"]), name="test.Report")
    try:
        wf = Workflow(name="w", steps=[Task(name="Write", agent=lambda x: Report("q3"))])
        wf.run_sync()
        path = wf.get_state().save(tmp_path / "s.json")
        loaded = WorkflowState.load(path)
        assert isinstance(loaded.results["Write"], Report) and loaded.results["Write"].title == "q3"
    finally:
        unregister_serializer(Report)
    with pytest.raises(StateError, match=r"test\.Report"):
        WorkflowState.load(path)


def _saved(tmp_path: Path, agents: Agents) -> tuple[Workflow, Path]:
    agents.failing.add("Write")
    wf = report(agents)
    wf.run_sync("x")
    return wf, wf.get_state().save(tmp_path / "state.json")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda raw: raw[: len(raw) // 2], "corrupt or truncated"),
    (lambda raw: b"", "is empty"),
    (lambda raw: b"\x00\x01garbage", "corrupt or truncated"),
    (lambda raw: b'{"hello": 1}', "not a pyagent state file"),
    (lambda raw: raw.replace(b'"version":1', b'"version":99'), "version 99"),
    (lambda raw: raw.replace(b"x>Research", b"y>Research"), "checksum"),
    (lambda raw: raw.replace(b'"workflow":"Research Report"', b'"workflow":"Other"', 1), "workflow 'Other'"),
])
def test_bad_state_files_are_state_errors_and_nothing_runs(
        rt: Runtime, tmp_path: Path, damage: Any, message: str) -> None:
    agents = Agents()
    wf, path = _saved(tmp_path, agents)
    path.write_bytes(damage(path.read_bytes()))
    before = path.read_bytes()
    calls = dict(agents.calls)
    with pytest.raises(StateError, match=message):
        wf.resume_from(path)
    assert agents.calls == calls
    assert path.read_bytes() == before


def test_state_file_of_another_workflow_is_refused(rt: Runtime, tmp_path: Path) -> None:
    agents = Agents()
    _, path = _saved(tmp_path, agents)
    other = report(agents, name="Another Flow")
    with pytest.raises(StateError, match="'Research Report', not 'Another Flow'"):
        other.resume_from(path)


def test_state_of_a_workflow_that_lost_tasks_is_refused(rt: Runtime, tmp_path: Path) -> None:
    agents = Agents()
    _, path = _saved(tmp_path, agents)
    changed = Workflow(name="Research Report", steps=[Task(name="Write", agent=agents["Write"])])
    with pytest.raises(StateError, match="no longer"):
        changed.resume_from(path)


def test_missing_file_and_unknown_run_id_without_storage(rt: Runtime, tmp_path: Path) -> None:
    wf = report(Agents())
    with pytest.raises(StateError, match="does not exist"):
        wf.resume_from(tmp_path / "nope.json")
    with pytest.raises(StateError, match="no checkpoint storage"):
        wf.resume_from("0123abcd")


def test_saved_file_is_versioned_json(rt: Runtime, tmp_path: Path) -> None:
    agents = Agents()
    _, path = _saved(tmp_path, agents)
    data = json.loads(path.read_text())
    assert data["format"] == "pyagent-state" and data["version"] == WorkflowState.VERSION
    assert data["workflow"] == "Research Report"
    body = json.loads(data["state"])
    assert [t["name"] for t in body["tasks"]] == ["Research", "Analyze", "Write"]


def test_get_state_by_run_id(rt: Runtime) -> None:
    wf = report(Agents())
    result = wf.run_sync()
    assert wf.get_state(result.run_id).run_id == result.run_id
    with pytest.raises(StateError, match="no running or last run"):
        wf.get_state("other")


@pytest.mark.parametrize("failing", ["Research", "Write"], ids=["nothing-done", "two-done"])
def test_a_state_file_of_a_checkpointed_run_resumes_into_the_same_checkpoints(
        rt: Runtime, tmp_path: Path, failing: str) -> None:
    """The run's checkpoints already exist: resuming from its state file must append after them."""
    import uuid

    url = f"memory://{uuid.uuid4().hex}"
    agents = Agents()
    agents.failing.add(failing)
    steps = [Task(name=n, agent=agents[n]) for n in ("Research", "Analyze", "Write", "Review")]
    wf = Workflow(name="Research Report", steps=steps, checkpointing={"storage": url})
    first = wf.run_sync("x")
    assert first.status is TaskStatus.FAILED
    path = wf.get_state().save(tmp_path / "state.json")
    agents.failing.clear()
    result = wf.resume_from(path)
    assert result.ok, result.error
    assert result.errors == {}  # the final checkpoint was written too
    assert result.output == "x>Research>Analyze>Write>Review"
    # The store holds the finished run, and resuming it from there reuses everything.
    again = wf.resume_from(first.run_id)
    assert again.ok and all(t.reused for t in again.tasks.values())


@pytest.mark.anyio
async def test_ctx_state_keys_that_are_not_strings_survive_get_state_save_and_resume(
        rt: Runtime, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    fail = {"on": True}

    def first(x: Any, ctx: Any) -> str:
        ctx.state[7] = "int key"
        ctx.state[("region", 2)] = "tuple key"
        ctx.state["plain"] = 1
        return "first"

    def second(x: Any, ctx: Any) -> str:
        if fail["on"]:
            raise RuntimeError("not yet")
        seen.update(ctx.state)
        return "done"

    wf = Workflow(name="keys", steps=[Task(name="first", agent=first), Task(name="second", agent=second)])
    await wf.run()
    state = wf.get_state()
    assert state.shared == {7: "int key", ("region", 2): "tuple key", "plain": 1}
    path = state.save(tmp_path / "keys.json")
    assert WorkflowState.load(path).shared == state.shared
    fail["on"] = False
    result = await wf.resume_from(path)
    assert result.ok and seen == {7: "int key", ("region", 2): "tuple key", "plain": 1}


def test_cancelled_tasks_are_listed_apart_from_failed_ones_and_repr_is_bounded() -> None:
    from pyagent.durability.state import WorkflowState
    from pyagent.model.results import TaskResult

    records = {}
    for name, status in (("big", TaskStatus.COMPLETED), ("hang", TaskStatus.CANCELLED), ("boom", TaskStatus.FAILED)):
        rec = TaskResult(name, status, "agent")
        rec.started_at = rec.finished_at = 1.0
        records[name] = rec
    records["big"].output = "x" * 1_000_000
    records["boom"].error = RuntimeError("down")
    state = WorkflowState.from_records("fan", ["big", "hang", "boom", "later"], records, status=TaskStatus.FAILED)
    assert (state.completed, state.failed, state.cancelled, state.pending) == (["big"], ["boom"], ["hang"], ["later"])
    assert len(repr(state)) < 1000


@pytest.mark.parametrize("where", ["folder is a file", "target is a folder"])
def test_a_state_file_that_cannot_be_written_is_a_state_error_naming_it(tmp_path: Path, where: str) -> None:
    from pyagent.orchestrator import WorkflowState

    blocker = tmp_path / "blocker"
    if where == "folder is a file":
        blocker.write_text("not a folder")
        target = blocker / "state.json"
    else:
        blocker.mkdir()
        (blocker / "keep").write_text("x")
        target = blocker
    with pytest.raises(StateError, match=rf"state file '{re.escape(str(target))}' cannot be written: .*nothing was written"):
        WorkflowState(workflow="w", run_id="r", input="x").save(target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["blocker", *(["keep"] if blocker.is_dir() else [])])
