"""Values JSON cannot carry, and names no store can keep: a clear error, never a stuck run.

Every case that the encoder used to fail on with a raw ``UnicodeEncodeError``, ``ValueError`` or
``RecursionError`` (leaving the stored run ``running`` forever, or a header without checkpoints)
must now be a ``StateError`` naming the task or the input, with the stored run ended as failed,
or, where JSON can hold the value after all, a checkpoint that resumes exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pyagent import ConfigurationError, StateError, Task, Workflow
from pyagent._defaults.memory_store import MemoryStore
from pyagent.durability import codec
from pyagent.durability.state import WorkflowState
from pyagent.durability.store import Checkpoint
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents

pytestmark = pytest.mark.anyio

SURROGATE = os.fsdecode(b"caf\xe9-r\xe9sum\xe9.txt")  # a file name that is not UTF-8
BIG = 10 ** 5000


def circular() -> list[Any]:
    value: list[Any] = ["loop"]
    value.append(value)
    return value


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def wf_with(output: Any, url: str, then_fail: bool = False) -> tuple[Workflow, Agents]:
    agents = Agents()
    if then_fail:
        agents.failing.add("Next")
    steps = [Task(name="Make", agent=lambda x: output), Task(name="Next", agent=agents["Next"])]
    return Workflow(name="encoding", steps=steps, checkpointing={"storage": url}), agents


async def test_a_lone_surrogate_in_an_output_is_checkpointed_and_comes_back_unchanged(
        drt: Runtime, store_url: str) -> None:
    assert "\udce9" in SURROGATE
    wf, agents = wf_with(SURROGATE, store_url, then_fail=True)
    first = await wf.run("x")
    assert first.status is TaskStatus.FAILED and first.errors.keys() == {"Next"}  # only the agent's failure
    agents.failing.clear()
    result = await wf.resume_from(first.run_id)
    assert result.ok and result.tasks["Make"].reused
    assert result.outputs["Make"] == SURROGATE
    assert result.output == f"{SURROGATE}>Next"


def test_a_lone_surrogate_round_trips_through_a_state_file(tmp_path: Path) -> None:
    state = WorkflowState(workflow="w", run_id="r", input=SURROGATE, shared={"file": SURROGATE})
    path = state.save(tmp_path / "state.json")
    back = WorkflowState.load(path)
    assert back.input == SURROGATE and back.shared == {"file": SURROGATE}


@pytest.mark.parametrize(("value", "why"), [
    (BIG, "integer of 16610 bits"),
    (circular(), "contains itself"),
    (nested(2000), "nested more than 400 levels"),
    ({"rows": [{"id": 1, "deep": nested(450)}]}, "nested more than 400 levels"),
], ids=["huge-int", "circular", "nested-2000", "nested-inside"])
async def test_an_output_json_cannot_carry_fails_the_run_naming_the_task_and_the_stored_run_ends_failed(
        drt: Runtime, store_url: str, value: Any, why: str) -> None:
    wf, agents = wf_with(value, store_url)
    result = await wf.run("x")
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, StateError)
    assert "the output of task 'Make'" in (result.error or "") and why in (result.error or "")
    assert agents.calls == {}  # the failed checkpoint stopped the run before the next task
    stored = await MemoryStore(store_url).load(result.run_id)
    assert stored is not None and stored.header.status == "failed"  # not "running" forever
    assert await MemoryStore(store_url).get_lease(result.run_id) is None


@pytest.mark.parametrize(("value", "why"), [
    (BIG, "integer of"), (circular(), "contains itself"), (nested(1500), "nested more than"),
], ids=["huge-int", "circular", "nested"])
async def test_an_input_json_cannot_carry_is_refused_before_anything_is_written(
        drt: Runtime, store_url: str, value: Any, why: str) -> None:
    wf, agents = wf_with("ok", store_url)
    with pytest.raises(StateError, match=f"the run's input.*{why}"):
        await wf.run(value, run_id="never-stored")
    store = MemoryStore(store_url)
    assert await store.load("never-stored") is None
    assert await store.get_lease("never-stored") is None
    assert agents.calls == {}


async def test_ctx_state_json_cannot_carry_fails_the_run_and_the_stored_run_ends_failed(
        drt: Runtime, store_url: str) -> None:
    def poison(x: Any, ctx: Any) -> str:
        ctx.state["rows"] = circular()
        return "done"

    agents = Agents()
    wf = Workflow(name="state", steps=[Task(name="Poison", agent=poison), Task(name="Next", agent=agents["Next"])],
                  checkpointing={"storage": store_url})
    result = await wf.run("x")
    assert result.status is TaskStatus.FAILED and "ctx.state['rows']" in (result.error or "")
    stored = await MemoryStore(store_url).load(result.run_id)
    assert stored is not None and stored.header.status == "failed"


async def test_deeply_nested_json_read_back_from_a_store_is_a_state_error(drt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t1")
    wf = Workflow(name="deep", steps=[Task(name=f"t{i}", agent=agents[f"t{i}"]) for i in range(2)],
                  checkpointing={"storage": store_url})
    first = await wf.run("x")
    forged = '{"v":1,"kind":"delta","tasks":[{"name":"t0","status":"completed","output":' + "[" * 100_000 + "]" * 100_000 + "}]}"
    cps = MemoryStore(store_url)._checkpoints[first.run_id]
    cps.append(Checkpoint(first.run_id, cps[-1].seq + 1, "delta", codec.seal(forged.encode())))
    calls = dict(agents.calls)
    with pytest.raises(StateError, match="nested too deeply"):
        await wf.resume_from(first.run_id)
    assert agents.calls == calls


def test_a_deeply_nested_state_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"format": "pyagent-state", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(StateError, match="corrupt or truncated"):
        WorkflowState.load(path)
    state = WorkflowState(workflow="w", input=nested(1000))
    with pytest.raises(StateError, match=r"the run's input\[0\]\[0\].*\[\.\.\.\] is nested more than"):
        state.save(tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists()


def test_the_deepest_value_that_can_be_saved_can_be_read_back() -> None:
    value = nested(codec.MAX_DEPTH - 1)
    raw = codec.dumps({"v": 1, "tasks": [{"output": codec.to_jsonable(value, "v")}]})
    assert codec.loads(raw, "it")["tasks"][0]["output"] == value
    with pytest.raises(StateError):
        codec.to_jsonable(nested(codec.MAX_DEPTH + 1), "too deep")


@pytest.mark.parametrize(("name", "why"), [("nightly\x00batch", "workflow name .* NUL character"),
                                           ("caf\udce9", "name")])
def test_a_workflow_name_no_store_can_keep_is_refused_when_the_workflow_is_built(name: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Workflow(name=name, steps=[Task(name="t", agent=lambda x: x)])


@pytest.mark.parametrize("run_id", ["run\x00one", "caf\udce9", ""])
async def test_a_run_id_no_store_can_keep_is_refused_before_anything_runs(
        drt: Runtime, store_url: str, run_id: str) -> None:
    agents = Agents()
    wf = Workflow(name="w", steps=[Task(name="t0", agent=agents["t0"])], checkpointing={"storage": store_url})
    with pytest.raises(ConfigurationError, match="run_id"):
        await wf.run("x", run_id=run_id)
    if run_id:
        with pytest.raises(ConfigurationError, match="run_id"):
            await wf.resume_from(run_id)
    # The same rule without any store: a workflow that runs here runs on every store.
    plain = Workflow(name="w", steps=[Task(name="t0", agent=agents["t0"])])
    with pytest.raises(ConfigurationError, match="run_id"):
        await plain.run("x", run_id=run_id)
    assert agents.calls == {} and MemoryStore(store_url)._runs == {}


def test_big_integers_inside_json_read_back_are_a_state_error() -> None:
    raw = json.dumps({"n": 1}).replace("1", "9" * 5000).encode()
    with pytest.raises(StateError, match="corrupt or truncated"):
        codec.loads(raw, "checkpoint 3")
