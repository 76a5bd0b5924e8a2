"""Guardrails: checks on what goes into an agent and what comes out of it.

A guardrail is a callable or a pydantic model class, wrapped in :class:`Guardrail`:

- a callable (sync or async) gets the value and returns ``True`` or ``None`` to let it pass,
  ``False`` to block it, :class:`Replace` or any other value to replace it (a redaction), or
  raises to block it (the exception's message is the reason);
- a pydantic model class: the value must validate against it (a ``str``/``bytes`` value as
  JSON, anything else as Python data). The value passes *unchanged*: a guardrail checks, it
  does not change the type of what flows on. Return ``Model.model_validate_json(v)`` from a
  callable to get the instance instead.

A block raises :class:`~pyagent.errors.GuardrailError`, which fails the task without retries or
fallback unless the guardrail allows a retry. Tasks check ``Task(input_guardrails=,
output_guardrails=)`` in the engine; agents built with ``agent(..., input_guardrails=,
output_guardrails=)`` check their own in ``run()``, so they hold wherever the agent runs (a
workflow task, a team pattern, a handoff). Every block and replacement is reported
(:mod:`pyagent.model.audit`) without the value itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pyagent.errors import ConfigurationError, GuardrailError
from pyagent.model import audit
from pyagent.model.events import GUARDRAIL_BLOCKED, GUARDRAIL_REPLACED

if TYPE_CHECKING:
    from pyagent.model.context import RunContext

Report = Callable[[str, dict[str, Any]], None]


class Replace:
    """What a guardrail returns to replace the value, with a note for the audit trail.

    Needed to replace with ``True``, ``False`` or ``None`` (which otherwise mean pass, block,
    pass); any other returned value replaces the checked one as is.
    """

    __slots__ = ("note", "value")

    def __init__(self, value: Any, note: str = "") -> None:
        self.value = value
        self.note = note

    def __repr__(self) -> str:
        return f"Replace(note={self.note!r})"


class Guardrail:
    """A named check (see the module docstring for what it may return).

    ``name`` defaults to the function's or model's name; ``retry=True`` lets the task's
    ``retry_config`` retry a block (an output that may come out right on another try), which
    is otherwise final.
    """

    __slots__ = ("check", "name", "retry")
    check: Callable[[Any], Any]
    name: str
    retry: bool

    def __init__(self, check: Any, *, name: str | None = None, retry: bool = False) -> None:
        if isinstance(check, Guardrail):
            name = name or check.name
            retry = retry or check.retry
            check = check.check
        elif _is_model(check):
            name = name or check.__name__
            check = _model_check(check)
        elif not callable(check):
            raise ConfigurationError(
                f"a guardrail must be a callable or a pydantic model class, got {type(check).__name__} "
                f"({check!r}): e.g. output_guardrails=[max_length(2000), MyModel, my_check]"
            )
        self.check = check
        self.name = name or _callable_name(check)
        self.retry = retry

    def __repr__(self) -> str:
        return f"Guardrail({self.name!r}{', retry=True' if self.retry else ''})"


def _is_model(value: Any) -> bool:
    if not isinstance(value, type):
        return False
    from pydantic import BaseModel

    return issubclass(value, BaseModel)


def _model_check(model: Any) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        from pydantic import ValidationError

        try:
            if isinstance(value, (str, bytes, bytearray)):
                model.model_validate_json(value)
            else:
                model.model_validate(value)
        except ValidationError as exc:
            # One line per problem, not pydantic's multi-line report with links.
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                                 for e in exc.errors())
            raise GuardrailError(f"does not validate as {model.__name__}: {problems}") from None

    return check


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "guardrail" if name == "<lambda>" else str(name)


def as_guardrails(value: Any, *, param: str) -> tuple[Guardrail, ...]:
    """The guardrails given as ``param=``: one guardrail, or a list of them (None: none)."""
    if value is None:
        return ()
    if isinstance(value, Guardrail) or callable(value):  # callable covers model classes
        value = [value]
    elif isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"{param}= must be a guardrail or a list of guardrails (callables or pydantic model "
            f"classes), got {type(value).__name__} ({value!r})"
        )
    return tuple(Guardrail(v) for v in value)


def is_control(value: Any) -> bool:
    """True for values that steer a pattern rather than carry content (``handoff.to(...)``)."""
    return getattr(type(value), "__pyagent_control__", False) is True


async def apply_guardrails(guards: tuple[Guardrail, ...], value: Any, *, side: str, report: Report,
                           agent: str | None = None, task: str | None = None) -> Any:
    """Run ``guards`` in order on ``value``; return it (or its replacement) or raise GuardrailError.

    Each guardrail sees the previous one's replacement. ``report(kind, data)`` is told of each
    replacement and of the block, which is raised after it is reported.
    """
    if is_control(value):
        return value
    for guard in guards:
        retry = guard.retry
        try:
            verdict = guard.check(value)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except GuardrailError as exc:
            reason, retry = exc.reason, retry or exc.retry
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if verdict is True or verdict is None:
                continue
            if verdict is not False:
                note = ""
                if isinstance(verdict, Replace):
                    verdict, note = verdict.value, verdict.note
                value = verdict
                report(GUARDRAIL_REPLACED, {"guardrail": guard.name, "side": side, "agent": agent,
                                            "note": note or "value replaced"})
                continue
            reason = "the check returned False"
        report(GUARDRAIL_BLOCKED, {"guardrail": guard.name, "side": side, "agent": agent,
                                   "reason": reason, "retry": retry})
        raise GuardrailError(reason, guardrail=guard.name, side=side, agent=agent, task=task, retry=retry)
    return value


class AgentGuardrails:
    """An agent's own guardrails, applied around its ``run()`` by :func:`guarded`."""

    __slots__ = ("inputs", "outputs")

    def __init__(self, inputs: tuple[Guardrail, ...], outputs: tuple[Guardrail, ...]) -> None:
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def build(cls, input_guardrails: Any, output_guardrails: Any, guardrails: Any) -> AgentGuardrails | None:
        """From ``agent(...)``'s arguments; ``guardrails=`` is short for ``output_guardrails=``."""
        if guardrails is not None:
            if output_guardrails is not None:
                raise ConfigurationError(
                    "pass guardrails= or output_guardrails=, not both: guardrails= is short for "
                    "output_guardrails= (the agent's answers); input_guardrails= checks what it is given"
                )
            output_guardrails = guardrails
        inputs = as_guardrails(input_guardrails, param="input_guardrails")
        outputs = as_guardrails(output_guardrails, param="guardrails" if guardrails is not None
                                else "output_guardrails")
        return cls(inputs, outputs) if inputs or outputs else None

    async def around(self, agent: Any, run: Callable[..., Awaitable[Any]],
                     input: Any, ctx: RunContext, **options: Any) -> Any:
        name = agent.name

        def report(kind: str, data: dict[str, Any]) -> None:
            audit.report(kind, data, ctx=ctx, source=name)

        task = ctx.task.name if ctx.task is not None else None
        if self.inputs:
            input = await apply_guardrails(self.inputs, input, side="input", report=report,
                                           agent=name, task=task)
        output = await run(agent, input, ctx, **options)
        if self.outputs:
            output = await apply_guardrails(self.outputs, output, side="output", report=report,
                                            agent=name, task=task)
        return output


RunMethod = TypeVar("RunMethod", bound=Callable[..., Coroutine[Any, Any, Any]])


def guarded(run: RunMethod) -> RunMethod:
    """Decorate an agent class's ``run`` so the agent's ``_guardrails`` (if any) apply around it."""

    @functools.wraps(run)
    async def checked(self: Any, input: Any, ctx: RunContext, **options: Any) -> Any:
        guards = self._guardrails
        if guards is None:
            return await run(self, input, ctx, **options)
        return await guards.around(self, run, input, ctx, **options)

    return cast(RunMethod, checked)
