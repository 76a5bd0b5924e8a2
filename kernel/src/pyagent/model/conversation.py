"""One instruction agent's turn: ask the model, run the tools it calls, validate its answer.

The loop: send the messages (with the agent's tools and output schema); when the model asks
for tool calls, run them (concurrently when it asks for several at once) and send their
results back; when it answers, return the text, or the answer validated as ``output_type``
(asking once more, with the validation error, when it does not match).

Every call is visible: ``model.usage`` per model call, ``tool.started`` then ``tool.called``
or ``tool.failed`` per tool call, ``agent.delta`` per streamed piece of text. Inside a
workflow run they go through the run (its monitors, its task's record and history); outside
one (a team pattern or a handoff called directly) they are broadcast to every monitor.

A tool call can be refused before it runs: each of the agent's ``tool_guards`` may return a
reason, which goes back to the model as the call's result (and ends the call in
``tool.failed`` with ``refused=True``), so policies such as capability grants plug in here.

Tool sources among the agent's tools (an MCP server's) are asked for their tools before the
first model call, with the tool scope of the workflow run (or of this agent run outside one);
their tools then go through the same loop, events, guards and grants as Python functions.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.errors import CapabilityError
from pyagent.model import events as ev
from pyagent.model.capabilities import check_tool_call, record_denial
from pyagent.model.context import current_run, current_task
from pyagent.model.language import ModelRequest, ModelResponse, ToolCall, Usage, ask, render_json
from pyagent.model.structured import OutputShape
from pyagent.model.toolsource import ToolScope, scope_for

if TYPE_CHECKING:
    from pyagent.model.agents import InstructionAgent
    from pyagent.model.context import RunContext
    from pyagent.model.tools import Tool

ToolGuard = Callable[[Any, ToolCall, "RunContext"], "str | Awaitable[str | None] | None"]
"""``guard(agent, call, ctx)`` returns None to allow a tool call, or the reason it is refused."""

DEFAULT_MAX_TOOL_CALLS = 20
RESULT_LIMIT = 500  # characters of a tool's result kept in the run's history


class Reporter:
    """Where an agent's events and records go: its workflow run (and task), or every monitor."""

    __slots__ = ("agent", "run", "run_id", "task", "workflow")

    def __init__(self, agent: str, ctx: RunContext) -> None:
        self.agent = agent
        run = ctx.run
        task = ctx.task.name if ctx.task is not None else None
        if run is None:
            # A team pattern inside a workflow step builds its own contexts: the run (and the
            # step it belongs to) come from the engine's context variables.
            run = current_run()
            if run is not None and task is None:
                task = current_task()
        self.run = run
        self.task = task
        self.run_id = ctx.run_id or (run.run_id if run is not None else "")
        self.workflow = ctx.workflow.name if ctx.workflow is not None else ""

    def emit(self, kind: str, **data: Any) -> None:
        if self.run is not None:
            self.run.emit(kind, self.task, agent=self.agent, **data)
            return
        from pyagent.model.events import Event
        from pyagent.plugins import get_runtime

        runtime = get_runtime()
        runtime.broadcast(Event(kind, workflow=self.workflow, run_id=self.run_id, task=None,
                                timestamp=runtime.clock.time(), data={"agent": self.agent, **data}))

    def delta(self, text: str) -> None:
        if text:
            self.emit(ev.AGENT_DELTA, delta=text)

    def usage(self, model: Any, response: ModelResponse) -> None:
        reported = response.usage
        usage = Usage(requests=1)
        if reported is not None:
            usage.input_tokens, usage.output_tokens = reported.input_tokens, reported.output_tokens
            name = response.model or str(getattr(model, "name", ""))
            usage.cost = reported.cost if reported.cost is not None else price(name, usage)
            data: dict[str, Any] = {"model": name, "input_tokens": usage.input_tokens,
                                    "output_tokens": usage.output_tokens}
            if usage.cost is not None:
                data["cost"] = usage.cost
            self.emit(ev.MODEL_USAGE, **data)
        if self.run is not None:
            self.run.record_usage(self.task, usage)

    def tool_call(self, entry: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.record_tool_call(self.task, entry)


def price(model: str, usage: Usage) -> float | None:
    """The cost of ``usage`` from the configured price table (USD per million tokens), or None."""
    from pyagent.config import get_settings

    table = get_settings().prices
    if not table:
        return None
    entry = table.get(model) or table.get(model.partition(":")[2])
    if entry is None:
        return None
    return (usage.input_tokens * float(entry.get("input", 0.0))
            + usage.output_tokens * float(entry.get("output", 0.0))) / 1_000_000


def time_left() -> float | None:
    """Seconds until the enclosing timeout (a task's, a pattern's), or None when there is none."""
    deadline = anyio.current_effective_deadline()
    if deadline == math.inf:
        return None
    return max(0.0, deadline - anyio.current_time())


class Conversation:
    """One run of an instruction agent: the messages so far and what its tools did."""

    def __init__(self, agent: InstructionAgent, model: Any, ctx: RunContext, *,
                 output_type: Any = None, lenient: bool = False) -> None:
        self.agent = agent
        self.model = model
        self.ctx = ctx
        self.tools: dict[str, Tool] = {t.name: t for t in agent.tools}
        self.shape = OutputShape(output_type) if output_type is not None else None
        self.lenient = lenient
        self.report = Reporter(agent.name, ctx)
        self.calls_made = 0
        self.sources: list[Any] = list(getattr(agent, "tool_sources", ()))

    async def run(self, messages: list[dict[str, Any]]) -> Any:
        if not self.sources:
            return await self._converse(messages)
        # Tool sources keep what they open in the workflow run's scope (closed when the run
        # ends), or, outside any run, in this agent run's own.
        scope = scope_for(self.report.run)
        own = scope is None
        if scope is None:
            scope = ToolScope()
        try:
            await self._load_sources(scope)
            return await self._converse(messages)
        finally:
            if own:
                await scope.aclose()

    async def _load_sources(self, scope: ToolScope) -> None:
        from pyagent.model.tools import check_distinct

        for source in self.sources:
            for tool in await source.load_tools(scope):
                if tool.name in self.tools:  # raises: two tools of one name
                    check_distinct([self.tools[tool.name], tool], hint=(
                        f"give tool source {source.name!r} a prefix= or a tool_filter= that leaves one out"))
                self.tools[tool.name] = tool

    async def _converse(self, messages: list[dict[str, Any]]) -> Any:
        agent = self.agent
        specs = [t.spec for t in self.tools.values()]
        tools_closed = False
        reasked = False
        on_delta = self.report.delta if agent.stream else None
        while True:
            request = ModelRequest(messages=list(messages), tools=[] if tools_closed else specs,
                                   output=self.shape.spec if self.shape is not None else None,
                                   on_delta=on_delta, timeout=time_left(), agent=agent.name)
            response = await ask(self.model, request)
            self.report.usage(self.model, response)
            if response.tool_calls:
                if tools_closed:
                    from pyagent.errors import ModelError

                    raise ModelError(
                        f"agent '{agent.name}': the model kept calling tools after its limit of "
                        f"max_tool_calls={agent.max_tool_calls} was reached and tools were withdrawn; "
                        "raise max_tool_calls or tell the agent to answer sooner",
                        model=str(getattr(self.model, "name", "")))
                messages.append(response.to_message())
                messages.extend(await self._run_calls(response.tool_calls))
                tools_closed = self.calls_made >= agent.max_tool_calls
                continue
            text = response.text or ""
            if self.shape is None:
                return text
            try:
                return self.shape.parse(text)
            except ValueError as problem:
                if self.lenient:
                    return text
                if reasked:
                    from pyagent.errors import StructuredOutputError

                    raise StructuredOutputError(
                        f"agent '{agent.name}': the model's answer does not match output_type "
                        f"{self.shape.spec.name} even after being asked again ({problem}); use a model "
                        "that supports JSON-schema output, or simplify the type",
                        text=text, model=str(getattr(self.model, "name", ""))) from None
                reasked = True
                messages.append({"role": "assistant", "content": text})
                messages.append({"role": "user", "content": (
                    f"Your answer does not match the required JSON schema: {problem}. Answer again with "
                    "only a JSON value that matches the schema, and nothing else.")})

    # -- tools -------------------------------------------------------------------------------

    async def _run_calls(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        """Run the calls of one model turn (concurrently) and return their tool messages, in order."""
        results: list[str] = [""] * len(calls)
        budget = self.agent.max_tool_calls - self.calls_made
        self.calls_made += min(len(calls), max(budget, 0))
        if len(calls) == 1:
            results[0] = await self._one(calls[0], budget > 0)
        else:
            async def one(i: int, call: ToolCall) -> None:
                results[i] = await self._one(call, i < budget)

            async with anyio.create_task_group() as tg:
                for i, call in enumerate(calls):
                    tg.start_soon(one, i, call)
        return [{"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)]

    async def _one(self, call: ToolCall, allowed: bool) -> str:
        arguments = _arguments(call.arguments)
        self.report.emit(ev.TOOL_STARTED, tool=call.name, call_id=call.id, arguments=arguments)
        started, clock = time.time(), time.perf_counter()
        entry: dict[str, Any] = {"agent": self.agent.name, "tool": call.name, "call_id": call.id,
                                 "arguments": arguments, "started_at": started}
        tool = self.tools.get(call.name)
        refusal: str | None = None
        problem: str | None = None
        kwargs: dict[str, Any] = {}
        if not allowed:
            refusal = (f"this agent may make at most {self.agent.max_tool_calls} tool calls per run "
                       "(max_tool_calls); answer with what you have")
        elif tool is None:
            # A tool outside the agent's grant (its tools=): denied, audited, and the refusal is
            # the call's result, so the model can go on without it.
            try:
                check_tool_call(self.agent, call.name, granted=self.tools if self.sources else None)
            except CapabilityError as denied:
                record_denial(denied, ctx=self.ctx, call_id=call.id)
                refusal = denied.refusal
            else:  # granted by name but not callable here: say so plainly
                known = ", ".join(self.tools) or "none"
                problem = f"there is no tool named {call.name!r} (the tools are: {known})"
        else:
            try:
                kwargs = tool.parse(call.arguments)
            except ValueError as exc:
                problem = str(exc)
            else:
                refusal = await self._authorize(call)
        if refusal is not None or problem is not None:
            error = f"refused: {refusal}" if refusal is not None else problem
            return self._failed(entry, clock, str(error), refused=refusal is not None)
        assert tool is not None
        try:
            value = await tool.call(kwargs, self.ctx)
        except Exception as exc:
            return self._failed(entry, clock, f"{type(exc).__name__}: {exc}")
        except anyio.get_cancelled_exc_class():
            # Cut off (the task's timeout, a cancelled run): the call still ends, in the
            # events and in the task's record, before the cancellation goes on.
            self._failed(entry, clock, "cancelled before the tool returned (the task's timeout or a cancellation)")
            raise
        duration = time.perf_counter() - clock
        entry.update(status="ok", duration=duration, result=_bounded(value))
        self.report.tool_call(entry)
        self.report.emit(ev.TOOL_CALLED, tool=call.name, call_id=call.id, duration=duration, result=value)
        return render_json(value)

    def _failed(self, entry: dict[str, Any], clock: float, error: str, *, refused: bool = False) -> str:
        duration = time.perf_counter() - clock
        entry.update(status="refused" if refused else "failed", duration=duration, error=error)
        self.report.tool_call(entry)
        extra = {"refused": True} if refused else {}
        self.report.emit(ev.TOOL_FAILED, tool=entry["tool"], call_id=entry["call_id"], duration=duration,
                         error=error, **extra)
        return f"Error: {error}"

    async def _authorize(self, call: ToolCall) -> str | None:
        for guard in self.agent.tool_guards:
            reason = guard(self.agent, call, self.ctx)
            if inspect.isawaitable(reason):
                reason = await reason
            if reason:
                return str(reason)
        return None


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


def _bounded(value: Any) -> str:
    text = render_json(value)
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "..."


__all__ = ["DEFAULT_MAX_TOOL_CALLS", "Conversation", "Reporter", "ToolGuard", "price", "time_left"]
