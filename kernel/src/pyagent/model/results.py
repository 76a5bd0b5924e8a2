"""What a run returns: a result per task and one for the workflow."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pyagent.model.context import Message
from pyagent.model.language import Usage
from pyagent.model.tasks import TaskStatus
from pyagent.model.text import short_repr


class Attempt:
    """One attempt at a task: when it ran and how it ended.

    ``error`` is ``"Type: message"`` when it failed, and ``traceback`` its formatted traceback
    (bounded: see :mod:`pyagent.model.tracebacks`); None in records saved before tracebacks were kept.
    """

    __slots__ = ("agent", "error", "finished_at", "number", "started_at", "traceback")

    def __init__(self, number: int, agent: str, started_at: float) -> None:
        self.number = number
        self.agent = agent
        self.started_at = started_at
        self.finished_at: float | None = None
        self.error: str | None = None
        self.traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "agent": self.agent,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "traceback": self.traceback,
        }

    def __repr__(self) -> str:
        return f"Attempt({self.number}, agent={self.agent!r}, error={self.error!r})"


class TaskResult:
    """How one task ended: ``status``, ``output``, ``error``, attempts and timing.

    ``error`` is the exception and ``error_message`` it as ``"Type: message"``; ``traceback``
    is the failure's formatted traceback (bounded: see :mod:`pyagent.model.tracebacks`), kept
    with the task's checkpoints and history, so it is there after a restart too. None for a
    task that did not fail, and in records saved before tracebacks were kept.

    A slotted class rather than a pydantic model: one is made per task on the hot path.
    """

    __slots__ = (
        "_attempts",
        "agent",
        "error",
        "fallback_strategy",
        "finished_at",
        "name",
        "output",
        "primary_error",
        "primary_output",
        "reason",
        "reused",
        "started_at",
        "status",
        "tool_calls",
        "traceback",
        "usage",
    )

    def __init__(self, name: str, status: TaskStatus = TaskStatus.PENDING, agent: str = "") -> None:
        self.name = name
        self.status = status
        self.agent = agent
        self.output: Any = None
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._attempts: list[Attempt] | None = None
        self.reason: str | None = None
        self.reused = False
        self.fallback_strategy: str | None = None
        self.primary_error: str | None = None
        self.primary_output: Any = None
        self.usage: Usage | None = None  # tokens the task's model calls used, summed (None: no model called)
        self.tool_calls: list[dict[str, Any]] | None = None  # the task's tool calls, in order
        self.traceback: str | None = None

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, in order. A task that ran once without a policy records its one attempt lazily."""
        if self._attempts is None:
            self._attempts = []
            if self.started_at is not None and self.status is not TaskStatus.SKIPPED:
                att = Attempt(1, self.agent, self.started_at)
                att.finished_at = self.finished_at
                if self.status is TaskStatus.FAILED and self.error is not None:
                    att.error = f"{type(self.error).__name__}: {self.error}"
                    att.traceback = self.traceback
                self._attempts.append(att)
        return self._attempts

    @attempts.setter
    def attempts(self, value: list[Attempt]) -> None:
        self._attempts = value

    @property
    def attempt_count(self) -> int:
        if self._attempts is None:
            return 0 if self.started_at is None or self.status is TaskStatus.SKIPPED else 1
        return len(self._attempts)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def error_message(self) -> str | None:
        if self.error is None:
            return None
        return f"{type(self.error).__name__}: {self.error}"

    @property
    def retries(self) -> int:
        """Attempts of the primary agent after its first (a fallback's attempt is not a retry)."""
        primary = len(self.attempts) - (1 if self.fallback_strategy is not None else 0)
        return max(0, primary - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "agent": self.agent,
            "output": self.output,
            "error": self.error_message,
            "traceback": self.traceback,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": [a.to_dict() for a in self.attempts],
            "reason": self.reason,
            "reused": self.reused,
            "fallback_strategy": self.fallback_strategy,
            "primary_error": self.primary_error,
            "primary_output": self.primary_output,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "tool_calls": list(self.tool_calls or []),
        }

    def __repr__(self) -> str:
        return f"TaskResult({self.name!r}, status={self.status.value}, output={short_repr(self.output)})"


class WorkflowResult(BaseModel):
    """The result of one workflow run.

    ``output`` is the final output, ``outputs`` every completed task's output by name,
    ``tasks`` every task's :class:`TaskResult`. A failed run has ``status == "failed"`` and
    ``error`` (and ``traceback``, the failure's formatted traceback, bounded like a task's);
    it is returned, not raised. A run returned while it waits for people has
    ``status == "waiting"`` and ``interrupts``, the questions it waits on
    (:class:`~pyagent.Interrupt`); it goes on once they are answered.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    workflow: str
    run_id: str
    status: TaskStatus
    output: Any = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    error: str | None = None
    traceback: str | None = Field(default=None, repr=False)
    exception: BaseException | None = Field(default=None, exclude=True, repr=False)
    errors: dict[str, str] = Field(default_factory=dict)
    transcript: list[Message] = Field(default_factory=list)
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    usage: Usage | None = None
    interrupts: list[Any] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.COMPLETED

    @property
    def attempts(self) -> dict[str, list[Attempt]]:
        """Every task's attempts, by task name."""
        return {name: rec.attempts for name, rec in self.tasks.items()}

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def tasks_completed(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status is TaskStatus.COMPLETED)

    def raise_for_status(self) -> WorkflowResult:
        """Raise the run's error if it failed; return the result otherwise."""
        if self.status is TaskStatus.COMPLETED:
            return self
        if self.exception is not None:
            raise self.exception
        from pyagent.errors import PyAgentError

        if self.status is TaskStatus.WAITING:
            asked = "; ".join(f"{i.question!r} (question {i.id})" for i in self.interrupts) or "questions"
            raise PyAgentError(f"run {self.run_id!r} of workflow {self.workflow!r} waits for answers to {asked}")
        raise PyAgentError(self.error or f"workflow {self.workflow!r} ended {self.status.value}")

    def __repr__(self) -> str:
        # Not pydantic's field-by-field repr: it repeats every output (in .output, .outputs and
        # each task) at full length.
        if self.status is TaskStatus.WAITING:
            tail = f"waiting for {len(self.interrupts)} answer(s)"
        else:
            tail = f"output={short_repr(self.output)}" if self.ok else f"error={short_repr(self.error)}"
        return (f"WorkflowResult(workflow={self.workflow!r}, status={self.status.value}, "
                f"run_id={self.run_id!r}, tasks={len(self.tasks)}, {tail})")

    def __str__(self) -> str:
        if self.status is TaskStatus.WAITING:
            return f"{self.workflow} [waiting] " + "; ".join(i.question for i in self.interrupts)
        return f"{self.workflow} [{self.status.value}] {short_repr(self.output)}" if self.ok else (
            f"{self.workflow} [{self.status.value}] {self.error}"
        )
