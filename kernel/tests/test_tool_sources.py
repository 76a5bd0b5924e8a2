"""Tool sources: tools found when an agent runs, kept open for the run, closed when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, RunContext, Tool, agent
from pyagent.orchestrator import Task, Workflow
from pyagent.plugin import ToolScope, ToolSource, shared_tool_scope
from pyagent.testing import Reply, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


class Connection:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.calls = 0
        self.task = anyio.get_current_task().id


class CountingSource:
    """A source whose 'connection' records when it opens and closes, and in which task."""

    def __init__(self, name: str = "counter", *, tools: Sequence[str] = ("add", "shout"),
                 shared: bool = False) -> None:
        self.name = name
        self.tool_names = list(tools)
        self.shared = shared
        self.log: list[str] = []
        self.closing_task: Any = None

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Connection]:
        self.log.append("open")
        conn = Connection(self.log)
        try:
            yield conn
        finally:
            # Exited by the task that entered it, as anyio-based clients need.
            self.closing_task = anyio.get_current_task().id
            assert self.closing_task == conn.task
            self.log.append("close")

    async def load_tools(self, scope: ToolScope) -> list[Tool]:
        if self.shared:
            scope = shared_tool_scope()
        conn: Connection = await scope.enter(("counter", self.name), self._connect)

        def make(tool_name: str) -> Tool:
            async def call(arguments: dict[str, Any], ctx: Any) -> Any:
                conn.calls += 1
                if tool_name == "add":
                    return arguments["a"] + arguments["b"]
                return str(arguments.get("text", "")).upper()

            return Tool.from_schema(tool_name, f"the {tool_name} tool", {
                "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                                 "text": {"type": "string"}}}, call)

        return [make(n) for n in self.tool_names]


def test_a_source_is_a_tool_source_and_kept_apart_from_functions() -> None:
    source = CountingSource()
    assert isinstance(source, ToolSource)

    def local(x: int) -> int:
        return x

    bot = agent("You count", tools=[local, source], model=ScriptedModel(["ok"]))
    assert [t.name for t in bot.tools] == ["local"] and bot.tool_sources == [source]
    with pytest.raises(ConfigurationError, match="must be a list"):
        agent("You count", tools=source)


async def test_outside_a_run_the_source_lives_as_long_as_the_agent_run() -> None:
    source = CountingSource()
    model = ScriptedModel([tool_call("add", a=2, b=3), Reply("five")])
    bot = agent("You add", tools=[source], model=model)
    assert await bot.run("2+3?", RunContext()) == "five"
    assert source.log == ["open", "close"]
    # The model saw the source's tools with their schemas.
    assert [t.name for t in model.requests[0].tools] == ["add", "shout"]
    assert model.requests[1].messages[-1]["content"] == "5"


async def test_inside_a_workflow_run_one_connection_serves_every_agent_and_closes_at_the_end(
        chain_runtime: Any) -> None:
    source = CountingSource()
    seen: list[list[str]] = []

    def first(x: Any) -> Any:
        return x

    a = agent("You add", name="a", tools=[source], model=ScriptedModel([tool_call("add", a=1, b=1), Reply("two")]))
    b = agent("You shout", name="b", tools=[source],
              model=ScriptedModel([tool_call("shout", text="hi"), Reply("HI")]))

    def check(x: Any) -> Any:
        seen.append(list(source.log))
        return x

    wf = Workflow(name="w", steps=[Task(name="a", agent=a), Task(name="b", agent=b),
                                   Task(name="check", agent=check)])
    result = await wf.run("go")
    assert result.ok, result.error
    assert seen == [["open"]]  # still open while the run goes on, opened once for both agents
    assert source.log == ["open", "close"]
    calls = result.tasks["a"].tool_calls
    assert calls is not None and calls[0]["tool"] == "add" and calls[0]["status"] == "ok"


async def test_a_cancelled_run_still_closes_what_its_sources_opened(chain_runtime: Any) -> None:
    source = CountingSource()
    started = anyio.Event()

    async def slow(x: Any) -> Any:
        started.set()
        await anyio.sleep(60)

    a = agent("You add", name="a", tools=[source], model=ScriptedModel([tool_call("add", a=1, b=1), Reply("two")]))
    wf = Workflow(name="w", steps=[Task(name="a", agent=a), Task(name="slow", agent=slow)])
    with anyio.move_on_after(10) as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wf.run, "go")
            await started.wait()
            tg.cancel_scope.cancel()
    assert not outer.cancelled_caught
    assert source.log == ["open", "close"]


async def test_a_tool_outside_the_source_list_is_denied_and_audited(chain_runtime: Any) -> None:
    source = CountingSource(tools=["add"])
    model = ScriptedModel([tool_call("delete_everything"), Reply("could not")])
    a = agent("You add", name="a", tools=[source], model=model)
    wf = Workflow(name="w", steps=[Task(name="a", agent=a)])
    events: list[Any] = []
    result = await wf.run("go", on_event=events.append)
    assert result.ok
    refusal = model.requests[1].messages[-1]["content"]
    assert "refused" in refusal and "delete_everything" in refusal
    calls = result.tasks["a"].tool_calls
    assert calls is not None and calls[0]["status"] == "refused"
    [denied] = [e for e in events if e.kind == "capability.denied"]
    assert denied.task == "a" and denied.data["target"] == "delete_everything"
    assert denied.data["capability"] == "tool" and "(allowed: add)" in denied.data["denial"]


async def test_two_sources_with_one_tool_name_are_refused_with_the_fix() -> None:
    model = ScriptedModel([Reply("never")])
    bot = agent("You add", tools=[CountingSource("one"), CountingSource("two")], model=model)
    with pytest.raises(ConfigurationError, match="prefix="):
        await bot.run("x", RunContext())


async def test_the_shared_scope_keeps_a_connection_across_agent_runs() -> None:
    source = CountingSource(shared=True)
    for _ in range(2):
        bot = agent("You add", tools=[source], model=ScriptedModel([tool_call("add", a=1, b=2), Reply("3")]))
        assert await bot.run("1+2", RunContext()) == "3"
    assert source.log == ["open"]
    await shared_tool_scope().aclose()
    assert source.log == ["open", "close"]


async def test_concurrent_first_uses_open_once_and_a_failure_to_open_is_raised() -> None:
    scope = ToolScope()
    opened: list[int] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[int]:
        opened.append(1)
        await anyio.sleep(0.01)
        yield len(opened)

    values: list[int] = []

    async def use() -> None:
        values.append(await scope.enter("k", connect))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(use)
    assert values == [1] * 5 and opened == [1]

    @asynccontextmanager
    async def broken() -> AsyncIterator[int]:
        raise OSError("no such server")
        yield 0  # pragma: no cover

    with pytest.raises(OSError, match="no such server"):
        await scope.enter("bad", broken)
    assert not scope.opened("bad")
    await scope.discard("k")
    assert not scope.opened("k")
    await scope.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await scope.enter("k", connect)


def test_a_schema_tool_passes_the_decoded_arguments_through() -> None:
    async def call(arguments: dict[str, Any], ctx: Any) -> Any:
        return arguments

    t = Tool.from_schema("lookup", "Look up", {"type": "object"}, call)
    assert t.parse('{"q": "x"}') == {"q": "x"}
    with pytest.raises(ValueError, match="JSON object"):
        t.parse("[1]")
    with pytest.raises(ConfigurationError, match="not allowed"):
        Tool.from_schema("bad name!", "", {}, call)
