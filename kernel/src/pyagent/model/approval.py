"""``ApprovalTask``: a workflow step that asks a person and waits for the answer, declared as data."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from pyagent.errors import PyAgentError
from pyagent.model.interrupts import Approval, Escalation, Question
from pyagent.model.tasks import Task


class ApprovalRejectedError(PyAgentError):
    """A person answered an :class:`ApprovalTask` with ``approved: false`` (and ``on_reject="fail"``)."""

    retryable = False


class ApprovalTask(Task):
    """A step that asks ``question`` and outputs the answer (an :class:`Approval` by default).

    ``question`` is a string, or a function of the task's input (and ``ctx`` when it takes a
    second parameter) returning one. ``schema``, ``timeout`` (how long the person has),
    ``on_timeout``, ``default`` and ``escalate_to`` are those of ``ctx.interrupt``; the task's
    ``metadata`` is shown with the question. With ``on_reject="fail"`` (the default) an answer
    whose ``approved`` is false fails the task (so a sequential workflow stops there);
    ``"continue"`` outputs it like any other answer. It always runs in the run's own process
    (``executor="local"``), where questions can be asked.
    """

    question: str | Callable[..., Any]
    schema_: Any = Field(default=Approval, alias="schema")
    answer_timeout: float | None = Field(default=None, gt=0)
    on_timeout: Literal["fail", "default"] = "fail"
    default: Any = None
    escalate_to: Escalation | str | None = None
    on_reject: Literal["fail", "continue"] = "fail"

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _timeout_is_the_questions(cls, data: Any) -> Any:
        # ``timeout=`` of an approval is how long the person has, not how long an agent may run.
        if isinstance(data, dict) and "timeout" in data:
            data = dict(data)
            data["answer_timeout"] = data.pop("timeout")
        return data

    @model_validator(mode="after")
    def _asks(self) -> ApprovalTask:
        if self.agent is not None:
            raise ValueError("an ApprovalTask asks a person: give it question=..., not agent=...")
        if self.fallback_agent is not None:
            raise ValueError("an ApprovalTask has no fallback agent: a person's answer is the outcome")
        if self.executor not in (None, "local"):
            raise ValueError(f"an ApprovalTask runs in the run's own process, not on executor {self.executor!r}")
        # Checked now, so a bad schema or default fails when the workflow is built.
        Question(self.question if isinstance(self.question, str) else "?", schema=self.schema_,
                 timeout=self.answer_timeout, on_timeout=self.on_timeout, default=self.default,
                 escalate_to=self.escalate_to, metadata=self.metadata)
        self.executor = "local"
        self.agent = _Asker(self)
        return self


class _Asker:
    """The agent of an ApprovalTask: one ``ctx.interrupt``."""

    description = "asks a person and waits for the answer"

    def __init__(self, task: ApprovalTask) -> None:
        self.task = task
        self.name = "person"

    async def run(self, input: Any, ctx: Any) -> Any:
        task = self.task
        question = task.question
        if callable(question):
            params = [p for p in inspect.signature(question).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            text = question(input, ctx) if len(params) >= 2 else question(input)
            if inspect.isawaitable(text):
                text = await text
        else:
            text = question
        answer = await ctx.interrupt(str(text), schema=task.schema_, timeout=task.answer_timeout,
                                     on_timeout=task.on_timeout, default=task.default,
                                     escalate_to=task.escalate_to, metadata=task.metadata)
        approved = answer.get("approved") if isinstance(answer, dict) else getattr(answer, "approved", None)
        if task.on_reject == "fail" and approved is False:
            comment = answer.get("comment") if isinstance(answer, dict) else getattr(answer, "comment", "")
            raise ApprovalRejectedError(f"{task.name!r} was not approved" + (f": {comment}" if comment else ""))
        return answer
