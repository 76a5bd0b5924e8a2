"""Executors: per-task selection, resources, configuration by name, start before a run, closing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyagent import (
    ConfigurationError,
    Orchestrator,
    RetryConfig,
    Task,
    TaskStatus,
    Workflow,
    hookimpl,
)
from pyagent.config import load_settings
from pyagent.plugin import current_run, current_task, run_scope

pytestmark = pytest.mark.anyio


class Recorder:
    """A throwaway executor: runs agents on the loop, tags outputs, counts starts and closes."""

    instances: list[Recorder] = []
    supports_resources = False

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.calls: list[tuple[str, Any]] = []
        self.started = 0
        self.closed = 0
        Recorder.instances.append(self)

    async def start(self) -> None:
        if self.options.get("fail_start"):
            raise ConnectionError("the cluster is not there")
        self.started += 1

    async def call(self, agent: Any, input: Any, ctx: Any) -> Any:
        self.calls.append((ctx.task.name, ctx.task.resources))
        return f"{self.options.get('tag', 'remote')}:{await agent.run(input, ctx)}"

    async def close(self) -> None:
        self.closed += 1


class Placing(Recorder):
    supports_resources = True


class Executors:
    @hookimpl
    def pyagent_register_executors(self, register: Any) -> None:
        register("recorder", Recorder)
        register("placing", Placing)


@pytest.fixture
def rt(mini_runtime: Any) -> Any:
    Recorder.instances.clear()
    mini_runtime.register(Executors(), "executors")
    return mini_runtime


def upper(x: str) -> str:
    return x.upper()


async def test_a_task_can_name_its_own_executor(rt: Any) -> None:
    wf = Workflow(name="w", steps=[
        Task(name="a", agent=upper),
        Task(name="b", agent=upper, executor="recorder"),
        Task(name="c", agent=upper, executor="recorder", timeout=5, retry_config=RetryConfig(max_retries=1)),
        Task(name="d", agent=lambda x: x + "!"),
    ])
    result = await wf.run("x")
    assert result.status is TaskStatus.COMPLETED, result.error
    assert result.outputs == {"a": "X", "b": "remote:X", "c": "remote:REMOTE:X", "d": "remote:REMOTE:X!"}
    (executor,) = Recorder.instances
    assert [name for name, _ in executor.calls] == ["b", "c"] and executor.started == 1


async def test_a_workflow_on_one_executor_can_keep_a_task_local(rt: Any) -> None:
    wf = Workflow(name="w", executor="recorder", executor_options={"tag": "far"},
                  steps=[Task(name="a", agent=upper), Task(name="b", agent=upper, executor="local")])
    result = await wf.run("x")
    assert result.outputs == {"a": "far:X", "b": "FAR:X"}


async def test_resources_on_an_executor_that_cannot_place_them_are_refused_before_anything_runs(rt: Any) -> None:
    ran: list[Any] = []
    for executor in (None, "recorder"):
        wf = Workflow(name="w", steps=[Task(name="first", agent=ran.append),
                                       Task(name="train", agent=upper, executor=executor, resources={"GPU": 1})])
        with pytest.raises(ConfigurationError) as info:
            await wf.run("x")
        assert f"task 'train' of workflow 'w' asks for resources {{'GPU': 1.0}} but its executor " \
               f"'{executor or 'local'}' cannot place work by resources" in str(info.value)
        assert "Task(..., executor='dask')" in str(info.value)
    assert ran == []


async def test_an_executor_that_places_resources_reads_them_from_the_task(rt: Any) -> None:
    wf = Workflow(name="w", steps=[Task(name="train", agent=upper, executor="placing", resources={"GPU": 2})])
    assert (await wf.run("x")).output == "remote:X"
    assert Recorder.instances[0].calls == [("train", {"GPU": 2.0})]


@pytest.mark.parametrize(("resources", "message"), [
    ({}, "resources must be a non-empty table"),
    ({"GPU": 0}, "resource 'GPU' needs an amount > 0"),
    ({"GPU": True}, "resource 'GPU' needs an amount > 0"),
    ({"": 1}, "resource names must be non-empty strings"),
    ("GPU", "resources must be a non-empty table"),
])
def test_resources_are_validated(resources: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Task(name="t", agent=upper, resources=resources)


def test_an_empty_executor_name_is_refused() -> None:
    with pytest.raises(ValueError, match="executor is empty"):
        Task(name="t", agent=upper, executor=" ")


async def test_the_configured_executor_is_the_default_and_a_workflows_own_wins(
        rt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyagent.toml").write_text('executor = "recorder"\n[executors.recorder]\ntag = "configured"\n')
    monkeypatch.chdir(tmp_path)
    plain = Workflow(name="plain", steps=[Task(name="a", agent=upper)])
    assert (await plain.run("x")).output == "configured:X"
    own = Workflow(name="own", executor="recorder", executor_options={"tag": "mine"}, steps=[Task(name="a", agent=upper)])
    assert (await own.run("x")).output == "mine:X"
    local = Workflow(name="local", executor="local", steps=[Task(name="a", agent=upper)])
    assert (await local.run("x")).output == "X"
    assert [r.options for r in Recorder.instances] == [{"tag": "configured"}, {"tag": "mine"}]


async def test_the_executor_setting_comes_from_the_environment_too(
        rt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYAGENT_EXECUTOR", "recorder")
    assert (await Workflow(name="w", steps=[Task(name="a", agent=upper)]).run("x")).output == "remote:X"


def test_executor_settings_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYAGENT_DASK_ADDRESS", raising=False)
    settings = load_settings(tmp_path, dask_address="tcp://scheduler:8786")
    assert settings.executor_options("dask") == {"address": "tcp://scheduler:8786"}
    assert settings.executor_options("local") == {}
    assert load_settings(tmp_path, dask_address="10.0.0.5:8786").dask_address == "10.0.0.5:8786"
    with pytest.raises(ConfigurationError, match="is not a Dask scheduler address: write it as tcp://host:8786"):
        load_settings(tmp_path, dask_address="http://scheduler:8786/path")
    monkeypatch.setenv("PYAGENT_EXECUTOR", "not a name")
    with pytest.raises(ConfigurationError, match=r"executor \(from environment variable PYAGENT_EXECUTOR\).*"
                                                 "is not an executor name"):
        load_settings(tmp_path)


async def test_executors_are_started_before_each_run_and_a_failed_start_runs_nothing(rt: Any) -> None:
    ran: list[Any] = []
    wf = Workflow(name="w", executor="recorder", steps=[Task(name="a", agent=upper)])
    await wf.run("x")
    await wf.run("y")
    assert Recorder.instances[0].started == 2  # start() is called per run: executors make it cheap
    broken = Workflow(name="b", executor="recorder", executor_options={"fail_start": True},
                      steps=[Task(name="a", agent=ran.append)])
    with pytest.raises(ConnectionError, match="the cluster is not there"):
        await broken.run("x")
    assert ran == []


async def test_the_orchestrator_closes_its_executors(rt: Any) -> None:
    wf = Workflow(name="w", executor="recorder", steps=[Task(name="a", agent=upper),
                                                        Task(name="b", agent=upper, executor="placing")])
    other = Workflow(name="other", executor="recorder", executor_options={"tag": "other"},
                     steps=[Task(name="a", agent=upper)])
    await other.run("x")  # not this orchestrator's: stays open
    async with Orchestrator() as orchestrator:
        orchestrator.add_workflow(wf)
        await orchestrator.run_workflow("w", "x")
    first, placing = Recorder.instances[1:]
    assert (first.closed, placing.closed, Recorder.instances[0].closed) == (1, 1, 0)
    await wf.run("x")  # a later run opens new ones
    assert len(Recorder.instances) == 5 and Recorder.instances[3].started == 1


def test_the_orchestrator_closes_from_sync_code_and_refuses_inside_a_loop(rt: Any) -> None:
    import anyio

    wf = Workflow(name="w", executor="recorder", steps=[Task(name="a", agent=upper)])
    with Orchestrator() as orchestrator:
        anyio.run(orchestrator.run_workflow, wf, "x")
    assert Recorder.instances[0].closed == 1

    async def inside() -> None:
        with pytest.raises(ConfigurationError, match=r"await orchestrator\.aclose"):
            Orchestrator().close()

    anyio.run(inside)


async def test_run_scope_sets_what_current_run_and_task_return() -> None:
    stand_in = object()
    assert current_run() is None
    with run_scope(stand_in, "t1"):
        assert current_run() is stand_in and current_task() == "t1"
    assert current_run() is None and current_task() is None


def test_executors_left_open_are_closed_at_exit(tmp_path: Path) -> None:
    marker = tmp_path / "closed.txt"
    script = tmp_path / "left_open.py"
    script.write_text(textwrap.dedent(f"""
        from pyagent import Task, Workflow, hookimpl
        from pyagent.plugin import get_runtime
        from pyagent.testing import PassForward

        class Closing:
            def __init__(self, **options):
                pass

            async def call(self, agent, input, ctx):
                return await agent.run(input, ctx)

            async def close(self):
                open({str(marker)!r}, "a").write("closed\\n")

        class Plugin:
            @hookimpl
            def pyagent_register_executors(self, register):
                register("closing", Closing)

        get_runtime().register(Plugin(), "closing")
        get_runtime().register(PassForward.plugin(), "pass-forward")
        wf = Workflow(name="w", executor="closing", steps=[Task(name="a", agent=str.upper)])
        print(wf.run_sync("x").output)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "X" and marker.read_text() == "closed\n"

