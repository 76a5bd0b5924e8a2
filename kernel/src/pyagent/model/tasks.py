"""Tasks: the unit of work, its policies, and conditional branches."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pyagent.model.agents import Agent, as_agent
from pyagent.model.guardrails import Guardrail, as_guardrails


class TaskStatus(enum.StrEnum):
    """Lifecycle of a task (and of a run): PENDING → RUNNING → COMPLETED | FAILED | SKIPPED | CANCELLED.

    WAITING: paused for a person's answer (``ctx.interrupt``); it runs again once answered, so
    it is neither finished nor failed. A run is WAITING while its unfinished tasks all wait.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    WAITING = "waiting"

    @property
    def finished(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.WAITING)


class RetryConfig(BaseModel):
    """How a failing task is retried: ``max_retries`` more attempts after the first.

    The delay before retry *n* (n = 1, 2, ...) is ``initial_delay * 2**(n-1)`` (exponential),
    ``initial_delay * n`` (linear) or ``initial_delay`` (constant), plus a random
    ``0..jitter`` seconds, and never more than ``max_delay``, except that an error carrying
    ``retry_after`` (a model's rate limit) waits at least that long. Only errors that are
    instances of ``retry_on`` are retried, and never one whose ``retryable`` is False (a bad
    API key); others fail the task at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    max_retries: int = Field(default=3, ge=0)
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    initial_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.0, ge=0, description="add up to this many random seconds")
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    @field_validator("retry_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        items = (value,) if isinstance(value, type) else tuple(value)
        for item in items:
            if not (isinstance(item, type) and issubclass(item, Exception)):
                raise ValueError(
                    f"retry_on must be exception classes (subclasses of Exception), got {item!r}: "
                    "e.g. retry_on=(TimeoutError, ConnectionError)"
                )
        if not items:
            raise ValueError("retry_on is empty: give at least one exception class, e.g. (Exception,)")
        return items

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryConfig:
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) is smaller than initial_delay ({self.initial_delay}): "
                "set max_delay >= initial_delay"
            )
        return self

    def wait_strategy(self) -> Any:
        """The tenacity wait strategy for this configuration (attempt 1 failed → first delay)."""
        import tenacity

        wait: Any
        if self.backoff == "constant":
            wait = tenacity.wait_fixed(self.initial_delay)
        elif self.backoff == "linear":
            wait = tenacity.wait_incrementing(
                start=self.initial_delay, increment=self.initial_delay, max=self.max_delay
            )
        else:
            wait = tenacity.wait_exponential(
                multiplier=self.initial_delay, min=self.initial_delay, max=self.max_delay
            )
        if self.jitter:
            wait = wait + tenacity.wait_random(0, self.jitter)
        cap = self.max_delay

        def capped(retry_state: Any) -> float:
            delay = min(float(wait(retry_state)), cap)
            # A server that said when to come back (HTTP 429/503 Retry-After) is not asked sooner.
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            after = getattr(error, "retry_after", None)
            if isinstance(after, (int, float)) and not isinstance(after, bool) and after > delay:
                return float(after)
            return delay

        return capped

    def delay(self, retry: int) -> float:
        """The delay (without jitter) before retry number ``retry`` (1-based), max_delay applied."""
        if self.backoff == "constant":
            base = self.initial_delay
        elif self.backoff == "linear":
            base = self.initial_delay * retry
        else:
            base = self.initial_delay * 2 ** (retry - 1)
        return min(base, self.max_delay)


def _task_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(value, (Task, ConditionalTask)) and isinstance(name, str):
        return name
    raise ValueError(
        f"a dependency must be a task name or a Task, got {type(value).__name__} ({value!r})"
    )


class Task(BaseModel):
    """One agent operation with its policies (retry, timeout, fallback, guardrails).

    ``input_guardrails`` check the task's input before each attempt, ``output_guardrails``
    the output of each attempt (the fallback agent's too); see :mod:`pyagent.model.guardrails`.
    ``executor`` runs this task's agent on another executor than the workflow's (``"dask"``);
    ``resources`` (``{"GPU": 1}``) is what the agent needs where it runs: an executor that
    cannot place work by resources refuses the task before the run starts.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", validate_assignment=False)

    name: str = Field(min_length=1)
    description: str = ""
    agent: Any = None
    dependencies: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    retry_config: RetryConfig | None = None
    timeout: float | None = Field(default=None, gt=0)
    fallback_agent: Any = None
    fallback_strategy: Literal["substitute", "supplement"] = "substitute"
    continue_on_error: bool = False
    input_guardrails: tuple[Guardrail, ...] = ()
    output_guardrails: tuple[Guardrail, ...] = ()
    executor: str | None = None
    resources: dict[str, float] | None = None

    @field_validator("executor")
    @classmethod
    def _executor_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("executor is empty: name an executor, e.g. executor='dask', or leave it out")
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError(
                f"resources must be a non-empty table of resource name to amount, e.g. "
                f"resources={{'GPU': 1}}; got {value!r}"
            )
        for name, amount in value.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"resource names must be non-empty strings, got {name!r}")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
                raise ValueError(f"resource {name!r} needs an amount > 0, got {amount!r}: e.g. {{{name!r}: 1}}")
        return {name: float(amount) for name, amount in value.items()}

    @field_validator("input_guardrails", "output_guardrails", mode="before")
    @classmethod
    def _guardrails(cls, value: Any, info: Any) -> tuple[Guardrail, ...]:
        return as_guardrails(value, param=info.field_name)

    @field_validator("agent", "fallback_agent", mode="before")
    @classmethod
    def _coerce_agent(cls, value: Any, info: Any) -> Agent | None:
        if value is None:
            return None
        return as_agent(value, what=info.field_name)

    @field_validator("dependencies", mode="before")
    @classmethod
    def _dependency_names(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, (str, Task, ConditionalTask)):
            value = [value]
        return [_task_name(v) for v in value]

    def __setattr__(self, name: str, value: Any) -> None:
        # Guardrails set after construction are checked and wrapped like those given to it.
        if name in ("input_guardrails", "output_guardrails"):
            value = as_guardrails(value, param=name)
        super().__setattr__(name, value)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class ConditionalTask(BaseModel):
    """Runs ``if_true`` or ``if_false`` depending on ``condition(ctx)``; the branch not taken is SKIPPED.

    ``ctx.result`` is the previous output (sequential) or the dependency's output (graph).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    condition: Callable[..., Any]
    if_true: Task | None = None
    if_false: Task | None = None
    name: str = ""
    description: str = ""
    dependencies: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    continue_on_error: bool = False

    _dependency_names = field_validator("dependencies", mode="before")(Task._dependency_names.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _check(self) -> ConditionalTask:
        if self.if_true is None and self.if_false is None:
            raise ValueError("ConditionalTask needs if_true=Task(...) or if_false=Task(...) (or both)")
        if not self.name:
            t = self.if_true.name if self.if_true else "-"
            f = self.if_false.name if self.if_false else "-"
            self.name = f"if {t} else {f}"
        return self

    @property
    def branches(self) -> list[Task]:
        return [t for t in (self.if_true, self.if_false) if t is not None]

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


Step = Task | ConditionalTask
