"""Agents: anything with a name, a description and ``async run(input, ctx)``.

``agent(...)`` builds the two kinds the kernel knows: function agents (a sync or async
callable) and instruction agents (text instructions answered by a language model that a
model plugin provides).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, overload, runtime_checkable

from pyagent.errors import ConfigurationError
from pyagent.model.capabilities import handoff_grant
from pyagent.model.context import RunContext
from pyagent.model.guardrails import AgentGuardrails, Guardrail, guarded
from pyagent.model.language import Model

_UNSET: Any = object()


@runtime_checkable
class Agent(Protocol):
    """The agent protocol every pattern calls."""

    name: str
    description: str

    async def run(self, input: Any, ctx: RunContext) -> Any: ...


def _wants_context(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` declares ``ctx``/``context`` after its input, or a second positional parameter without default.

    A defaulted second parameter (``lambda x, n=n: ...``, the loop-binding idiom) is left alone,
    and a lone parameter is always the input, whatever its name.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name in ("ctx", "context") for p in params[1:]):
        return True
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 and positional[1].default is inspect.Parameter.empty


def _context_keyword(fn: Callable[..., Any]) -> str | None:
    """The name to pass the context by when it cannot go second positionally (``def f(x, *, ctx)``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    for i, p in enumerate(params[1:], start=1):
        if p.name in ("ctx", "context"):
            positional = p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            return None if positional and i == 1 else p.name
    return None


def _by_keyword(fn: Callable[..., Any], name: str) -> Callable[[Any, RunContext], Any]:
    def call(input: Any, ctx: RunContext) -> Any:
        return fn(input, **{name: ctx})

    return call


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "agent" if name == "<lambda>" else name


class _Bounds:
    """What agents built by ``agent(...)`` share: their own guardrails and their handoff grant."""

    __slots__ = ("_guardrails", "can_handoff_to")

    def _bound(self, input_guardrails: Any, output_guardrails: Any, guardrails: Any,
               can_handoff_to: Any) -> None:
        self._guardrails: AgentGuardrails | None = AgentGuardrails.build(
            input_guardrails, output_guardrails, guardrails)
        self.can_handoff_to: frozenset[str] | None = handoff_grant(can_handoff_to)

    @property
    def input_guardrails(self) -> tuple[Guardrail, ...]:
        """The checks on what the agent is given, in order (set when the agent is built)."""
        return self._guardrails.inputs if self._guardrails is not None else ()

    @property
    def output_guardrails(self) -> tuple[Guardrail, ...]:
        """The checks on what the agent answers, in order (set when the agent is built)."""
        return self._guardrails.outputs if self._guardrails is not None else ()


class FunctionAgent(_Bounds):
    """An agent backed by a Python callable."""

    __slots__ = ("_call", "description", "fn", "is_async", "name", "thread", "wants_context")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        thread: bool = False,
        input_guardrails: Any = None,
        output_guardrails: Any = None,
        guardrails: Any = None,
        can_handoff_to: Any = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(
                f"agent(...) needs a callable or instruction text, got {type(fn).__name__}: "
                "pass a function, e.g. agent(my_function, name='researcher')"
            )
        self.fn = fn
        self.name = name or _callable_name(fn)
        self.description = description if description is not None else (inspect.getdoc(fn) or "")
        self.thread = thread
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )
        self.wants_context = _wants_context(fn)
        keyword = _context_keyword(fn) if self.wants_context else None
        # What the engine calls: the function itself, or an adapter passing ctx by keyword.
        self._call: Callable[..., Any] = fn if keyword is None else _by_keyword(fn, keyword)
        self._bound(input_guardrails, output_guardrails, guardrails, can_handoff_to)

    @guarded
    async def run(self, input: Any, ctx: RunContext) -> Any:
        fn = self._call
        if self.is_async:
            if self.wants_context:
                return await fn(input, ctx)
            return await fn(input)
        if self.thread:
            import anyio.to_thread

            # A blocking call cannot be interrupted: on cancellation or timeout the run goes on
            # without it (the thread finishes in the background, its result discarded) rather
            # than waiting for a call that may never return.
            if self.wants_context:
                return await anyio.to_thread.run_sync(fn, input, ctx, abandon_on_cancel=True)
            return await anyio.to_thread.run_sync(fn, input, abandon_on_cancel=True)
        result = fn(input, ctx) if self.wants_context else fn(input)
        if inspect.isawaitable(result):
            return await result
        return result

    def __call__(self, input: Any, ctx: RunContext | None = None) -> Any:
        """Call the wrapped function directly, as if it were not decorated."""
        if self.wants_context:
            return self._call(input, ctx if ctx is not None else RunContext())
        return self.fn(input)

    def __repr__(self) -> str:
        return f"FunctionAgent(name={self.name!r})"


def render_input(value: Any) -> str:
    """Render an agent input as prompt text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(f"{k}: {render_input(v)}" for k, v in value.items())
    return str(value)


def render_prompt(input: Any, ctx: RunContext) -> str:
    """Render the input and the run context into the user prompt of an instruction agent."""
    parts = [render_input(input)] if input is not None else []
    if ctx.task is not None and ctx.task.description:
        parts.append(f"Task: {ctx.task.name}: {ctx.task.description}")
    if ctx.phase:
        parts.append(f"Phase: {ctx.phase}")
    if ctx.step:
        parts.append(f"Current step: {ctx.step}")
    if ctx.results:
        lines = [f"- {name}: {render_input(out)}" for name, out in ctx.results.items()]
        parts.append("Results so far:\n" + "\n".join(lines))
    if ctx.transcript:
        lines = [f"- {m.agent} (round {m.round}): {render_input(m.content)}" for m in ctx.transcript]
        parts.append("Transcript:\n" + "\n".join(lines))
    if ctx.error is not None:
        parts.append(f"The previous agent failed with: {type(ctx.error).__name__}: {ctx.error}")
        if ctx.partial_output is not None:
            parts.append(f"Its partial output: {render_input(ctx.partial_output)}")
    return "\n\n".join(p for p in parts if p)


def _slug(text: str, words: int = 4) -> str:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(tokens[:words]) or "agent"


class InstructionAgent(_Bounds):
    """An agent whose behaviour is text instructions answered by a language model.

    The instructions double as its description for routing. The model is resolved when the
    agent first runs (or when a workflow using it starts), so building one never needs a
    model plugin. ``tools`` are functions the model may call (see :mod:`pyagent.model.tools`)
    and tool sources whose tools are found when it runs (:mod:`pyagent.model.toolsource`),
    ``output_type`` makes the answer a validated object instead of text, ``stream=True`` emits
    the answer's text as ``agent.delta`` events while it is written, and ``max_tool_calls``
    bounds the tool calls of one run. ``tool_guards`` are checks that may refuse a tool call
    before it runs (the refusal goes back to the model as the call's result).
    """

    def __init__(
        self,
        instructions: str,
        *,
        name: str | None = None,
        description: str | None = None,
        model: str | Model | None = None,
        tools: Any = None,
        output_type: Any = None,
        stream: bool = False,
        max_tool_calls: int | None = None,
        tool_guards: Any = None,
        input_guardrails: Any = None,
        output_guardrails: Any = None,
        guardrails: Any = None,
        can_handoff_to: Any = None,
    ) -> None:
        if not instructions.strip():
            raise ConfigurationError("agent(...) instructions are empty: describe what the agent does")
        from pyagent.model.conversation import DEFAULT_MAX_TOOL_CALLS
        from pyagent.model.tools import split_tools

        self.instructions = instructions
        self.name = name or _slug(instructions)
        self.description = description if description is not None else instructions
        self.model = model
        self._resolved: Model | None = model if (model is not None and not isinstance(model, str)) else None
        # Tool sources (an MCP server's tools) are asked for their tools each time the agent runs.
        self.tools, self.tool_sources = split_tools(tools)
        self.output_type = output_type
        if output_type is not None:
            from pyagent.model.structured import OutputShape

            OutputShape(output_type)  # an output_type without a JSON schema is refused now
        self.stream = bool(stream)
        limit = DEFAULT_MAX_TOOL_CALLS if max_tool_calls is None else max_tool_calls
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigurationError(f"max_tool_calls must be a whole number >= 0, got {max_tool_calls!r}")
        self.max_tool_calls = limit
        self.tool_guards: list[Any] = list(tool_guards or [])
        self._bound(input_guardrails, output_guardrails, guardrails, can_handoff_to)

    def resolve_model(self) -> Model:
        """The model object this agent calls; raises, naming the fix, when none is configured."""
        if self._resolved is None:
            from pyagent.plugins import get_runtime

            self._resolved = get_runtime().resolve_model(self.model, agent_name=self.name)
        return self._resolved

    def messages(self, input: Any, ctx: RunContext) -> list[dict[str, Any]]:
        """The chat messages of a run: the instructions, then the input and context as the user turn."""
        return [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": render_prompt(input, ctx)},
        ]

    @guarded
    async def run(self, input: Any, ctx: RunContext, *, output_type: Any = _UNSET,
                  lenient: bool = False) -> Any:
        """The model's answer: text, or an ``output_type`` object.

        ``output_type=`` overrides the agent's own for this call (patterns ask for plans and
        verdicts this way); with ``lenient=True`` an answer that does not match is returned as
        text instead of asking the model again (for callers that can read prose themselves).
        """
        from pyagent.model.conversation import Conversation

        model = self.resolve_model()
        wanted = self.output_type if output_type is _UNSET else output_type
        conversation = Conversation(self, model, ctx, output_type=wanted, lenient=lenient)
        return await conversation.run(self.messages(input, ctx))

    def __repr__(self) -> str:
        return f"InstructionAgent(name={self.name!r})"


AgentLike = Agent | Callable[..., Any]


@overload
def agent(
    fn_or_instructions: str,
    *,
    name: str | None = ...,
    description: str | None = ...,
    model: str | Model | None = ...,
    tools: Any = ...,
    output_type: Any = ...,
    stream: bool = ...,
    max_tool_calls: int | None = ...,
    input_guardrails: Any = ...,
    output_guardrails: Any = ...,
    guardrails: Any = ...,
    can_handoff_to: Any = ...,
) -> InstructionAgent: ...
@overload
def agent(
    fn_or_instructions: Callable[..., Any],
    *,
    name: str | None = ...,
    description: str | None = ...,
    thread: bool = ...,
    input_guardrails: Any = ...,
    output_guardrails: Any = ...,
    guardrails: Any = ...,
    can_handoff_to: Any = ...,
) -> FunctionAgent: ...
@overload
def agent(
    fn_or_instructions: None = ...,
    *,
    name: str | None = ...,
    description: str | None = ...,
    thread: bool = ...,
    input_guardrails: Any = ...,
    output_guardrails: Any = ...,
    guardrails: Any = ...,
    can_handoff_to: Any = ...,
) -> Callable[[Callable[..., Any]], FunctionAgent]: ...
def agent(
    fn_or_instructions: Any = None,
    *,
    name: str | None = None,
    description: str | None = None,
    model: str | Model | None = None,
    thread: bool = False,
    tools: Any = None,
    output_type: Any = None,
    stream: bool = False,
    max_tool_calls: int | None = None,
    input_guardrails: Any = None,
    output_guardrails: Any = None,
    guardrails: Any = None,
    can_handoff_to: Any = None,
) -> Any:
    """Build an agent from a function or from instructions; bare ``@agent(...)`` decorates.

    ``thread=True`` runs a blocking sync function in a worker thread, so a task timeout or a
    cancellation ends the task at once (the thread is left to finish in the background).
    ``tools``, ``output_type``, ``stream`` and ``max_tool_calls`` configure an instruction
    agent (see :class:`InstructionAgent`).

    Bounds (see docs/guardrails.md): ``input_guardrails=`` check what the agent is given,
    ``output_guardrails=`` what it answers (``guardrails=`` is short for ``output_guardrails=``),
    wherever the agent runs; ``can_handoff_to=`` (agents or names) limits whom it may hand off to.
    """
    llm_options = {"tools": tools, "output_type": output_type, "stream": stream or None,
                   "max_tool_calls": max_tool_calls}
    bounds = {"input_guardrails": input_guardrails, "output_guardrails": output_guardrails,
              "guardrails": guardrails, "can_handoff_to": can_handoff_to}
    if fn_or_instructions is None:
        if any(v is not None for v in llm_options.values()):
            raise ConfigurationError("tools=, output_type=, stream= and max_tool_calls= apply to instruction "
                                     "agents: agent('instructions', tools=[...]), not @agent(...)")

        def decorate(fn: Callable[..., Any]) -> FunctionAgent:
            return FunctionAgent(fn, name=name, description=description, thread=thread, **bounds)

        return decorate
    if isinstance(fn_or_instructions, str):
        return InstructionAgent(fn_or_instructions, name=name, description=description, model=model,
                                tools=tools, output_type=output_type, stream=stream,
                                max_tool_calls=max_tool_calls, **bounds)
    if model is not None:
        raise ConfigurationError("model= applies to instruction agents only; a function agent is its own model")
    given = sorted(k for k, v in llm_options.items() if v is not None)
    if given:
        raise ConfigurationError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to instruction (language-model) agents "
            "only: agent('instructions', tools=[...]); a function agent calls its functions itself"
        )
    return FunctionAgent(fn_or_instructions, name=name, description=description, thread=thread, **bounds)


class WorkflowAgent:
    """A workflow used as one step of another: its output is the sub-run's output, its failure the step's."""

    def __init__(self, workflow: Any) -> None:
        self.workflow = workflow
        self.name = workflow.name
        self.description = workflow.description or f"runs workflow {workflow.name!r}"

    async def run(self, input: Any, ctx: RunContext) -> Any:
        from pyagent.model.context import _step_of, current_task

        parent = ctx.run
        forward = parent.forward if parent is not None and parent.listening else None
        task = ctx.task.name if ctx.task is not None else current_task()
        token = _step_of.set((parent, task) if parent is not None else None)
        try:
            result = await self.workflow.run(input, on_event=forward)
        finally:
            _step_of.reset(token)
        if not result.ok:
            raise result.exception or RuntimeError(result.error)
        return result.output

    def __repr__(self) -> str:
        return f"WorkflowAgent({self.name!r})"


def as_agent(value: Any, *, what: str = "agent") -> Agent:
    """Return ``value`` as an agent: agents pass through, callables and workflows are wrapped, anything else is an error."""
    if isinstance(value, (FunctionAgent, InstructionAgent, WorkflowAgent)):
        return value
    # Objects that know how to act as an agent (a Workflow runs as a nested step) say so; the
    # data model does not import the workflow layer above it.
    adapt = getattr(type(value), "__pyagent_agent__", None)
    if adapt is not None:
        return adapt(value)  # type: ignore[no-any-return]
    if hasattr(value, "run") and hasattr(value, "name") and inspect.iscoroutinefunction(value.run):
        if not hasattr(value, "description"):
            value.description = ""
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return InstructionAgent(value)
    if callable(value):
        return FunctionAgent(value)
    run = getattr(value, "run", None)
    kind = type(value).__name__
    if callable(run) and not inspect.iscoroutinefunction(run):
        raise ConfigurationError(
            f"{what} {kind} has a run() method but it is not async: define it as "
            "`async def run(self, input, ctx)`, or pass a plain function to pyagent.agent(...)"
        )
    if callable(run) and not hasattr(value, "name"):
        raise ConfigurationError(
            f"{what} {kind} has an async run() but no name: set a `name` attribute "
            "(results and events are reported by agent name)"
        )
    raise ConfigurationError(
        f"{what} must be an agent or a callable, got {type(value).__name__} ({value!r}): "
        "use pyagent.agent(my_function) or pyagent.agent('instructions')"
    )


def as_agents(values: Any, *, what: str, param: str = "agents",
              distinct_because: str | None = None) -> list[Agent]:
    """A non-empty list of agents from the ``param=`` argument; with ``distinct_because``, names must be unique.

    ``what`` names one member in errors ("worker"); ``distinct_because`` says why names must
    differ, e.g. "assignments are by name".
    """
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigurationError(f"{param}= must be a list of agents, got {values!r}")
    agents = [as_agent(v, what=what) for v in values]
    if not agents:
        raise ConfigurationError(
            f"the {what} list is empty: there are no {what}s; pass {param}=[agent, ...]"
        )
    if distinct_because is not None:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigurationError(
                f"{what}s need distinct names ({distinct_because}); duplicated: {', '.join(dupes)}: "
                "pass name= to agent(...)"
            )
    return agents


def check_models(agents: Any) -> None:
    """Resolve the model of every instruction agent in ``agents``: one without a model raises now.

    Patterns call this before any agent runs, so a missing model plugin or setting is a
    configuration error, not a failure halfway through.
    """
    for a in agents:
        if isinstance(a, InstructionAgent):
            a.resolve_model()


AsyncAgentFn = Callable[[Any, RunContext], Awaitable[Any]]
