"""Agents: function agents (sync, async, with context), instruction agents, bad input."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pyagent import ConfigurationError, ModelNotConfiguredError, RunContext, agent
from pyagent.model.agents import FunctionAgent, InstructionAgent, as_agent
from pyagent.testing import ScriptedModel

pytestmark = pytest.mark.anyio


async def test_function_agent_sync_and_async() -> None:
    a = agent(lambda x: x + 1, name="inc", description="adds one")
    assert (a.name, a.description) == ("inc", "adds one")
    assert await a.run(1, RunContext()) == 2

    async def double(x: int) -> int:
        return x * 2

    b = agent(double)
    assert b.name == "double"
    assert await b.run(4, RunContext()) == 8


async def test_decorator_form_and_docstring_description() -> None:
    @agent(name="researcher")
    async def research(topic: str) -> str:
        """Finds sources on a topic."""
        return f"sources on {topic}"

    assert isinstance(research, FunctionAgent)
    assert research.description == "Finds sources on a topic."
    assert await research.run("AI", RunContext()) == "sources on AI"


@pytest.mark.parametrize(
    ("fn", "wants"),
    [
        (lambda x: x, False),
        (lambda x, ctx: x, True),
        (lambda x, context=None: x, True),  # named ctx/context after the input is always passed
        (lambda context: context, False),  # a lone parameter is the input, whatever its name
        (lambda x, n=3: x, False),  # the loop-binding idiom is left alone
        (lambda x, y: x, True),  # second positional without default
    ],
)
def test_context_detection(fn: Any, wants: bool) -> None:
    assert FunctionAgent(fn).wants_context is wants


async def test_context_is_passed_when_declared() -> None:
    seen = {}

    def fn(x: Any, ctx: RunContext) -> str:
        seen["run_id"] = ctx.run_id
        return "ok"

    assert await agent(fn).run(None, RunContext(run_id="r1")) == "ok"
    assert seen == {"run_id": "r1"}


async def test_thread_agents_run_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    a = agent(lambda x: threading.get_ident(), thread=True)
    assert await a.run(None, RunContext()) != loop_thread


def test_agent_rejects_non_callables() -> None:
    with pytest.raises(ConfigurationError, match="needs a callable or instruction text, got int"):
        FunctionAgent(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be an agent or a callable"):
        as_agent(3.5)
    with pytest.raises(ConfigurationError, match="instructions are empty"):
        agent("   ")


async def test_instruction_agent_without_model_fails_clearly(bare_runtime: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PYAGENT_MODEL", raising=False)
    sales = agent("You handle sales inquiries")
    assert isinstance(sales, InstructionAgent)
    assert sales.description == "You handle sales inquiries"
    with pytest.raises(ModelNotConfiguredError, match=r"needs a language model but none is configured.*ScriptedModel"):
        await sales.run("hello", RunContext())


async def test_instruction_agent_with_unknown_provider(bare_runtime: Any) -> None:
    a = agent("You write", model="nosuch:model-1")
    with pytest.raises(ModelNotConfiguredError, match="asked for 'nosuch:model-1'"):
        await a.run("x", RunContext())


async def test_instruction_agent_with_scripted_model_sees_context() -> None:
    model = ScriptedModel(["first reply", "second reply"])
    writer = agent("You write short answers", name="writer", model=model)
    ctx = RunContext(results={"Research": "facts"}, phase="plan", step="Outline")
    assert await writer.run("Write about AI", ctx) == "first reply"
    system, user = model.calls[0]
    assert system == {"role": "system", "content": "You write short answers"}
    assert "Write about AI" in user["content"]
    assert "Research: facts" in user["content"]
    assert "Phase: plan" in user["content"] and "Current step: Outline" in user["content"]
    assert await writer.run("again", RunContext()) == "second reply"
    with pytest.raises(RuntimeError, match="ran out of replies"):
        await writer.run("third", RunContext())


async def test_model_registered_by_a_plugin_is_used(bare_runtime: Any) -> None:
    from pyagent import hookimpl

    class EchoProvider:
        @hookimpl
        def pyagent_register_models(self, register: Any) -> None:
            register("echo", lambda model_id: ScriptedModel(lambda p: f"{model_id}:{p}"))

    bare_runtime.register(EchoProvider(), "echo-provider")
    a = agent("You echo", model="echo:v1")
    assert await a.run("hi", RunContext()) == "v1:hi"


async def test_keyword_only_context_parameter_is_passed_by_keyword(mini_runtime: Any) -> None:
    from pyagent.orchestrator import Task, Workflow

    def sync_fn(x: Any, *, ctx: RunContext) -> Any:
        return (x, ctx.run_id)

    async def async_fn(x: Any, *, context: RunContext) -> Any:
        return (x[0] + 1, context.task.name if context.task else None)

    assert await agent(sync_fn).run(1, RunContext(run_id="r1")) == (1, "r1")
    assert agent(sync_fn)(1, RunContext(run_id="r2")) == (1, "r2")
    result = await Workflow(name="w", steps=[Task(name="a", agent=sync_fn), Task(name="b", agent=async_fn)]).run(1)
    assert result.ok, result.error
    assert result.output == (2, "b")


def test_agent_objects_that_almost_fit_get_a_precise_error() -> None:
    class SyncRun:
        name = "sync"

        def run(self, input: Any, ctx: Any) -> Any:
            return input

    class Nameless:
        async def run(self, input: Any, ctx: Any) -> Any:
            return input

    with pytest.raises(ConfigurationError, match=r"SyncRun has a run\(\) method but it is not async: "
                                                 r"define it as `async def run\(self, input, ctx\)`"):
        as_agent(SyncRun())
    with pytest.raises(ConfigurationError, match=r"Nameless has an async run\(\) but no name: set a `name` attribute"):
        as_agent(Nameless())
