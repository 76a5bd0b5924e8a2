"""``AgentPatterns``: the multi-agent team patterns, each provided by a pattern plugin.

A team pattern plugin registers an object with ``build(**options) -> team`` under its name
(``supervisor``, ``consensus``, ``debate``, ``chain_of_thought``); a team has
``async run(input) -> TeamResult``. The facade resolves the plugin when called, so a
missing plugin is a clear error naming what to install.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from ._sync import run_or_await
from .context import Message, RunContext
from .errors import ConfigurationError
from .plugins import get_runtime
from .tasks import TaskStatus


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
        from .results import short_repr

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
        from .errors import PyAgentError

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
                     setting: str = "timeout") -> Any:
    """The agent's output; past ``timeout`` seconds the call is cancelled and ``TimeoutError`` raised.

    Team patterns call agents through this so an agent that never answers cannot hang them.
    """
    if timeout is None:
        return await agent.run(input, ctx)
    import anyio

    with anyio.move_on_after(timeout):
        return await agent.run(input, ctx)
    raise TimeoutError(f"no answer from {agent.name!r} within {setting}={timeout:g}s (the call was cancelled)")


def build_team(pattern: str, **options: Any) -> Any:
    """Build a team with the installed plugin for ``pattern``."""
    impl = get_runtime().lookup("pattern", pattern)
    if not hasattr(impl, "build"):
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"pattern '{pattern}' is a workflow pattern: use Workflow(pattern='{pattern}', steps=[...])"
        )
    return impl.build(**options)


class AgentPatterns:
    """The seed's multi-agent patterns.

    ``supervisor`` returns a team (``await team.run(task)``); the one-call helpers
    (``consensus``, ``debate``, ``chain_of_thought``) return the result from sync code and an
    awaitable inside a running event loop.
    """

    @staticmethod
    def supervisor(*, supervisor: Any, workers: list[Any], strategy: str = "round_robin", **options: Any) -> Any:
        """A supervised team: the supervisor plans, workers execute, the supervisor synthesizes."""
        return build_team("supervisor", supervisor=supervisor, workers=workers, strategy=strategy, **options)

    @staticmethod
    def consensus(*, agents: list[Any], task: Any, max_rounds: int = 3,
                  agreement_threshold: float = 0.8, **options: Any) -> Any:
        """Agents answer, see each other's answers and revise until they agree (or rounds run out)."""
        team = build_team("consensus", agents=agents, max_rounds=max_rounds,
                          agreement_threshold=agreement_threshold, **options)
        return run_or_await(lambda: team.run(task))

    @staticmethod
    def debate(*, pro_agent: Any, con_agent: Any, judge: Any, topic: Any, rounds: int = 3,
               **options: Any) -> Any:
        """Pro and con argue for ``rounds`` exchanges; the judge gives the verdict."""
        team = build_team("debate", pro_agent=pro_agent, con_agent=con_agent, judge=judge,
                          rounds=rounds, **options)
        return run_or_await(lambda: team.run(topic))

    @staticmethod
    def chain_of_thought(*, agent: Any, task: Any, steps: list[str], **options: Any) -> Any:
        """One agent call per reasoning step, each seeing the earlier steps' outputs."""
        team = build_team("chain_of_thought", agent=agent, steps=steps, **options)
        return run_or_await(lambda: team.run(task))
