"""What team patterns share: their result type and a bounded agent call.

Team patterns (supervisor, consensus, debate, chain of thought, handoff routing) run agents
outside a workflow's task list; they build a :class:`TeamResult` and call agents through
:func:`call_agent` so that an agent that never answers cannot hang them.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from pyagent.errors import ConfigurationError, PyAgentError
from pyagent.model.context import Message, RunContext
from pyagent.model.tasks import TaskStatus
from pyagent.model.text import short_repr


class TeamResult(BaseModel):
    """What a team pattern returns; pattern plugins subclass it with their own fields."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pattern: str
    run_id: str = ""
    status: TaskStatus = TaskStatus.COMPLETED
    output: Any = None
    error: str | None = None
    exception: BaseException | None = Field(default=None, exclude=True, repr=False)
    transcript: list[Message] = Field(default_factory=list)
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.COMPLETED

    def __repr__(self) -> str:
        # Bounded: pydantic's repr would print the whole transcript and every output.
        tail = f"output={short_repr(self.output)}" if self.ok else f"error={short_repr(self.error)}"
        return (f"{type(self).__name__}(pattern={self.pattern!r}, status={self.status.value}, "
                f"run_id={self.run_id!r}, messages={len(self.transcript)}, {tail})")

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def raise_for_status(self) -> Self:
        """Raise the run's error if it failed; return the result otherwise."""
        if self.status is TaskStatus.COMPLETED:
            return self
        if self.exception is not None:
            raise self.exception
        raise PyAgentError(self.error or f"{self.pattern} ended {self.status.value}")


def check_timeout(value: Any, setting: str = "timeout") -> float | None:
    """``None`` (no limit) or seconds > 0 for one agent call, with an error that says how to fix it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{setting} must be None (no limit) or seconds > 0 for each agent call, got {value!r}: "
            f"e.g. {setting}=60"
        )
    return float(value)


async def call_agent(agent: Any, input: Any, ctx: RunContext, *, timeout: float | None = None,
                     setting: str = "timeout", output_type: Any = None) -> Any:
    """The agent's output; past ``timeout`` seconds the call is cancelled and ``TimeoutError`` raised.

    Team patterns call agents through this so an agent that never answers cannot hang them.
    With ``output_type``, a language-model agent is asked for structured output of that type
    (a plan, a verdict, a vote) and its answer comes back as that type; when the model answers
    in prose instead, the text comes back, for the pattern to read as before. Other agents
    are called as they are.
    """
    if output_type is not None:
        from pyagent.model.agents import InstructionAgent

        if isinstance(agent, InstructionAgent):
            call = agent.run(input, ctx, output_type=output_type, lenient=True)
        else:
            call = agent.run(input, ctx)
    else:
        call = agent.run(input, ctx)
    if timeout is None:
        return await call
    import anyio

    with anyio.move_on_after(timeout):
        return await call
    raise TimeoutError(f"no answer from {agent.name!r} within {setting}={timeout:g}s (the call was cancelled)")
