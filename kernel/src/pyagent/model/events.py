"""Events: every task and workflow transition, delivered to monitors.

An ``Event`` is a slotted object, not a pydantic model: a run emits several per task, and
events are only built when someone listens.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

# Event kinds. Task kinds mirror TaskStatus transitions; the others are policies at work.
WORKFLOW_STARTED = "workflow.started"
WORKFLOW_COMPLETED = "workflow.completed"
WORKFLOW_FAILED = "workflow.failed"
WORKFLOW_CANCELLED = "workflow.cancelled"
TASK_STARTED = "task.started"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"
TASK_SKIPPED = "task.skipped"
TASK_CANCELLED = "task.cancelled"
TASK_REUSED = "task.reused"
TASK_RETRYING = "task.retrying"
TASK_FALLBACK = "task.fallback"
HANDOFF = "handoff"
# Guardrails and capabilities. ``task`` is the task (None outside a workflow); data: guardrail,
# side ("input"/"output"), agent, reason (blocked) or note (replaced), retry. Neither carries
# the value itself: it may be exactly what the guardrail keeps out of logs.
GUARDRAIL_BLOCKED = "guardrail.blocked"
GUARDRAIL_REPLACED = "guardrail.replaced"
# A handoff or tool call outside the agent's grant; data: capability ("handoff"/"tool"), agent
# (who asked), target, reason (why it was denied), and for handoffs the handoff record's fields.
CAPABILITY_DENIED = "capability.denied"
# Team patterns (consensus, debate, chain of thought, ...): ``workflow`` is the pattern name,
# ``task`` the agent that spoke, ``data`` carries pattern, round, phase/step and output.
TEAM_STARTED = "team.started"
TEAM_TURN = "team.turn"
TEAM_ROUND = "team.round"
TEAM_COMPLETED = "team.completed"
TEAM_FAILED = "team.failed"
CHECKPOINT_SAVED = "checkpoint.saved"
# A run paused for a person (``ctx.interrupt``); the same run id ends later, here or elsewhere.
# data: interrupts (id, task, question of each question it waits on), held (this process
# keeps the run and continues it when answered).
WORKFLOW_WAITING = "workflow.waiting"
# This process stopped running a waiting run (it continues once answered, here or in another
# process): the end of this execution, not of the run. data: interrupts.
WORKFLOW_SUSPENDED = "workflow.suspended"
# A task paused at ``ctx.interrupt``; data: interrupt (its id), question, agent. It runs again,
# from its start, once the question is answered.
TASK_WAITING = "task.waiting"
# Questions and answers, kept in the run's audit trail (``task`` is the task that asked); data:
# interrupt (id), question, level (0, or how many times it was escalated), deadline; answered:
# answer (JSON text), answered_by, answered_at; escalated: to (the new question's id).
INTERRUPT_ASKED = "interrupt.asked"
INTERRUPT_ANSWERED = "interrupt.answered"
INTERRUPT_EXPIRED = "interrupt.expired"
INTERRUPT_ESCALATED = "interrupt.escalated"
CIRCUIT_CHANGED = "circuit.changed"
# Language-model agents. ``task`` is the task the agent runs in (None outside a workflow) and
# ``data["agent"]`` the agent's name; ``call_id`` pairs a tool's start with its end.
AGENT_DELTA = "agent.delta"  # data: agent, delta (streamed text)
MODEL_USAGE = "model.usage"  # data: agent, model, input_tokens, output_tokens[, cost]
TOOL_STARTED = "tool.started"  # data: agent, tool, call_id, arguments
TOOL_CALLED = "tool.called"  # the call returned; data: agent, tool, call_id, duration, result
TOOL_FAILED = "tool.failed"  # data: agent, tool, call_id, duration, error
# Triggers (cron, events, webhooks). ``workflow`` is the triggered workflow, ``run_id`` the run.
TRIGGER_FIRED = "trigger.fired"  # a trigger started a run; data: trigger, source[, scheduled]
TRIGGER_SKIPPED = "trigger.skipped"  # a tick not run; data: trigger, source, scheduled, reason
EVENT_FILTER_FAILED = "event.filter_failed"  # an on_event filter raised; data: event, error
EVENT_UNHANDLED = "event.unhandled"  # emit() of an event nobody subscribes to; data: event


class Event:
    """One thing that happened in a run: ``kind``, where (workflow, run_id, task), when, and details."""

    __slots__ = ("data", "kind", "run_id", "status", "task", "timestamp", "workflow")

    def __init__(
        self,
        kind: str,
        *,
        workflow: str = "",
        run_id: str = "",
        task: str | None = None,
        status: str | None = None,
        data: dict[str, Any] | None = None,
        timestamp: float | None = None,
    ) -> None:
        self.kind = kind
        self.workflow = workflow
        self.run_id = run_id
        self.task = task
        self.status = status
        self.data = data if data is not None else {}
        self.timestamp = time.time() if timestamp is None else timestamp

    def __getattr__(self, name: str) -> Any:
        # Payload fields read as attributes (``event.priority``), as trigger filters expect.
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(f"event {self.kind!r} has no field {name!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "workflow": self.workflow,
            "run_id": self.run_id,
            "task": self.task,
            "status": self.status,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    def __repr__(self) -> str:
        where = f" task={self.task!r}" if self.task else ""
        return f"Event({self.kind!r}, workflow={self.workflow!r}{where}, status={self.status!r})"


class EventPayload(dict[str, Any]):
    """The payload of an emitted event: a dict whose fields also read as attributes.

    ``orchestrator.emit("new_ticket", {"priority": "high"})`` hands one of these to each
    subscription's filter and, as its input, to the workflow it starts: ``e.priority`` and
    ``e["priority"]`` both work. It is saved in checkpoints as itself.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the event has no field {name!r} (fields: {', '.join(self) or 'none'})") from None


def sync_listener(fn: Callable[[Event], Any], what: str) -> Callable[[Event], Any]:
    """``fn`` itself if it can take events; a coroutine function is refused before anything runs.

    Events are delivered by a plain call on the run's event loop, in the order they happen; a
    coroutine function would only build a coroutine that nobody awaits, silently.
    """
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004
        from pyagent.errors import ConfigurationError

        raise ConfigurationError(
            f"{what} {getattr(fn, '__name__', type(fn).__name__)}() is a coroutine function: events are delivered by calling it "
            "synchronously on the run's event loop, so it would never run; pass a plain function "
            "and hand slow work to a thread or a queue (e.g. an anyio memory stream's send_nowait)"
        )
    return fn


def wanted_kinds(listener: Callable[[Event], Any]) -> frozenset[str] | None:
    """The event kinds a listener asked for, or None for every kind.

    A monitor says what it wants with an ``event_kinds`` attribute, read from the listener
    itself or, for a bound ``monitor.on_event``, from the monitor. A run builds no event of a
    kind that none of its listeners wants, so a monitor that only alerts on failed runs
    costs nothing per task. A declaration that cannot be read (a property that raises, a
    value that is not kinds) never stops a run: that listener gets every event, and it is
    logged. :func:`declared_kinds` reads it strictly, for checking a monitor when it is set.
    """
    try:
        return declared_kinds(listener)
    except Exception as exc:
        import logging

        logging.getLogger("pyagent.monitors").warning(
            "listener %r: its event_kinds cannot be read (%s: %s), so it is given every event",
            listener, type(exc).__name__, exc)
        return None


def declared_kinds(listener: Callable[[Event], Any]) -> frozenset[str] | None:
    """:func:`wanted_kinds`, raising TypeError (or what reading it raises) for a bad declaration."""
    kinds = getattr(listener, "event_kinds", None)
    if kinds is None:
        owner = getattr(listener, "__self__", None)
        if owner is not None:
            kinds = getattr(owner, "event_kinds", None)
    if kinds is None:
        return None
    if isinstance(kinds, str):
        return frozenset((kinds,))
    if not isinstance(kinds, Iterable):
        raise TypeError(f"event_kinds must be event kinds (strings), got {kinds!r}")
    found = frozenset(kinds)
    if not all(isinstance(k, str) for k in found):
        raise TypeError(f"event_kinds must be event kinds (strings), got {kinds!r}")
    return found
