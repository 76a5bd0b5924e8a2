"""The run context handed to agents, and transcript messages.

Plain slotted classes rather than pydantic models: one context is built per task attempt,
so it sits on the hot path.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyagent.model.text import short_repr

if TYPE_CHECKING:
    from pyagent.engine.run import WorkflowRun
    from pyagent.model.tasks import Task
    from pyagent.workflow import Workflow


# Set by the engine while a run (and one of its tasks) executes; read by code that runs inside
# it without being handed a context (a team pattern in a workflow step, a model's tool loop).
_current_run: contextvars.ContextVar[WorkflowRun | None] = contextvars.ContextVar(
    "pyagent_current_run", default=None)


def current_run() -> WorkflowRun | None:
    """The workflow run the calling code is part of (an agent, a handoff inside a task), or None."""
    return _current_run.get()


_current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar("pyagent_current_task", default=None)

# Set by a workflow used as a step of another (WorkflowAgent) while it starts its run: the outer
# run and task, whose questions (ctx.interrupt) the inner run's are. Cleared inside every run,
# so a run merely started from inside another one (an emitted event's) is not nested.
_step_of: contextvars.ContextVar[tuple[Any, str | None] | None] = contextvars.ContextVar(
    "pyagent_step_of", default=None)


def current_task() -> str | None:
    """The name of the task whose agent the calling code runs in (a team pattern inside a step), or None."""
    return _current_task.get()


@contextlib.contextmanager
def run_scope(run: Any, task: str | None = None) -> Iterator[None]:
    """Make ``run`` and ``task`` what :func:`current_run` and :func:`current_task` return inside the block.

    For executors that run an agent away from its run (on a cluster's worker): they pass a
    stand-in that records what the agent reports (audits, usage, handoffs) and replay it on
    the real run when the call returns.
    """
    run_token = _current_run.set(run)
    task_token = _current_task.set(task)
    try:
        yield
    finally:
        _current_task.reset(task_token)
        _current_run.reset(run_token)


class Message:
    """One entry of a transcript: who said it, what, and in which round."""

    __slots__ = ("agent", "content", "metadata", "role", "round", "timestamp")

    def __init__(
        self,
        agent: str,
        content: Any,
        round: int = 0,
        role: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.agent = agent
        self.content = content
        self.round = round
        self.role = role
        self.metadata = metadata or {}
        self.timestamp = time.time()

    def __repr__(self) -> str:
        return f"Message(agent={self.agent!r}, round={self.round}, content={short_repr(self.content)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.agent, self.content, self.round, self.role) == (
            other.agent,
            other.content,
            other.round,
            other.role,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "content": self.content,
            "round": self.round,
            "role": self.role,
            "metadata": self.metadata,
            "timestamp": self.timestamp,
        }


class RunContext:
    """Structured access to the run for code agents; LLM agents get the same rendered as text.

    ``results`` holds the outputs so far by task name, ``result`` the previous output,
    ``state`` a dict shared by every task of the run, ``transcript`` the messages of a
    multi-agent pattern, ``phase`` which phase of a multi-phase pattern is running.
    """

    __slots__ = (
        "attempt",
        "error",
        "extra",
        "partial_output",
        "phase",
        "result",
        "results",
        "round",
        "run",
        "run_id",
        "state",
        "step",
        "task",
        "transcript",
        "workflow",
    )

    def __init__(
        self,
        *,
        workflow: Workflow | None = None,
        task: Task | None = None,
        results: dict[str, Any] | None = None,
        result: Any = None,
        state: dict[str, Any] | None = None,
        transcript: list[Message] | None = None,
        round: int = 0,
        attempt: int = 1,
        run_id: str = "",
        phase: str | None = None,
        step: str | None = None,
        error: BaseException | None = None,
        partial_output: Any = None,
        extra: dict[str, Any] | None = None,
        run: Any = None,
    ) -> None:
        self.workflow = workflow
        self.task = task
        self.results = results if results is not None else {}
        self.result = result
        self.state = state if state is not None else {}
        self.transcript = transcript if transcript is not None else []
        self.round = round
        self.attempt = attempt
        self.run_id = run_id
        self.phase = phase
        self.step = step
        self.error = error
        self.partial_output = partial_output
        self.extra = extra if extra is not None else {}
        self.run = run  # the WorkflowRun, for agents that start sub-workflows or emit events

    async def interrupt(self, question: str, *, schema: Any = None, timeout: float | None = None,
                        on_timeout: str = "fail", default: Any = None, escalate_to: Any = None,
                        metadata: dict[str, Any] | None = None, key: str | None = None) -> Any:
        """Ask a person ``question`` and return their answer; the run waits durably until there is one.

        The first time, the question is recorded and the task pauses (the run's status becomes
        ``waiting`` once nothing else can go on). Once it is answered, **the task runs again
        from its start** and this call returns the answer, validated into ``schema`` (a
        pydantic model or any type pydantic validates; a JSON schema dict; None: any JSON
        value). So work before the question runs again: make it idempotent, or do it in an
        earlier task (completed tasks never run again).

        ``timeout`` (seconds) with ``on_timeout="fail"`` (the task fails with
        InterruptTimeoutError), ``"default"`` (``default`` is the answer, given by
        ``"timeout"``) or ``escalate_to=`` (a second question, a string or an
        :class:`~pyagent.Escalation`, with its own id and timeout). ``metadata`` is shown with
        the question (e.g. ``{"assignee": "finance"}``). Only for agents that run in the run's
        own process (the local executor).

        When the task runs again, each call finds its answer by the question's text (or
        ``key``, for a question whose text changes from one run to the next) and how often the
        task asked it before, so questions asked concurrently get their own answers in any order.
        """
        from pyagent.errors import ConfigurationError
        from pyagent.model.interrupts import Question

        run = self.run
        ask = getattr(run, "ask_person", None)
        if run is None:
            raise ConfigurationError(
                "ctx.interrupt needs a workflow run: the agent was called outside one. Run it as a task of a "
                "workflow (or use an ApprovalTask)")
        if ask is None:
            raise ConfigurationError(
                "ctx.interrupt is not available where this agent runs (a remote executor such as a Dask worker "
                "runs it away from its run): ask in a task that runs on the local executor, e.g. an "
                "ApprovalTask or Task(..., executor='local') before or after this one")
        spec = Question(question, schema=schema, timeout=timeout, on_timeout=on_timeout, default=default,
                        escalate_to=escalate_to, metadata=metadata, key=key)
        task = self.task.name if self.task is not None else current_task()
        return await ask(task, spec)

    def __repr__(self) -> str:
        task = self.task.name if self.task is not None else None
        return f"RunContext(run_id={self.run_id!r}, task={task!r}, phase={self.phase!r}, round={self.round})"
