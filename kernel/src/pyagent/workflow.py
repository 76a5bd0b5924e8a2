"""Workflows: named steps plus the pattern that schedules them and the run-level policies."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pyagent.durability.store import unstorable
from pyagent.model.agents import WorkflowAgent
from pyagent.model.policies import CheckpointConfig, CircuitBreakerConfig
from pyagent.model.tasks import ConditionalTask, Step, Task

if TYPE_CHECKING:
    from pyagent.durability.metrics import WorkflowMetrics
    from pyagent.durability.state import WorkflowState
    from pyagent.model.results import TaskResult, WorkflowResult


class ExecutionPattern(enum.StrEnum):
    """The built-in pattern names; any other registered pattern name may be given as a string."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    GRAPH = "graph"


def _step_error(index: int, value: Any) -> ValueError:
    return ValueError(
        f"step {index} is a {type(value).__name__} ({value!r:.60}), not a Task: "
        "wrap it as Task(name=..., agent=...) or ConditionalTask(condition=..., if_true=...)"
    )


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a list of names (first == last), or None.

    An iterative depth-first search: a chain of thousands of tasks must not hit the
    recursion limit. Names that are not keys of ``deps`` are ignored.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(deps, WHITE)
    for root in deps:
        if color[root] != WHITE:
            continue
        color[root] = GREY
        path = [root]
        todo = [iter(deps[root])]
        while todo:
            for dep in todo[-1]:
                seen = color.get(dep)
                if seen == GREY:
                    return [*path[path.index(dep):], dep]
                if seen == WHITE:
                    color[dep] = GREY
                    path.append(dep)
                    todo.append(iter(deps[dep]))
                    break
            else:
                color[path.pop()] = BLACK
                todo.pop()
    return None


def branch_owners(steps: list[Step]) -> dict[str, str]:
    """Branch task name → the ConditionalTask step that runs it."""
    return {b.name: s.name for s in steps if isinstance(s, ConditionalTask) for b in s.branches}


class Workflow(BaseModel):
    """A named collection of steps and how to run them.

    ``pattern`` defaults to GRAPH when any step declares dependencies, else SEQUENTIAL.
    Names, dependencies and cycles are checked here, when the workflow is built.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str = Field(min_length=1)
    steps: list[Step] = Field(default_factory=list)
    pattern: ExecutionPattern | str | None = None
    description: str = ""
    reducer: Callable[..., Any] | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    failure_policy: Literal["fail_fast", "collect"] = "fail_fast"
    circuit_breaker: CircuitBreakerConfig | None = None
    checkpointing: CheckpointConfig | None = None
    max_active_runs: int | None = None
    """At most this many runs of the workflow go on at once (None: no bound).

    In one process a run beyond the bound waits for a slot (``pyagent.engine.slots``);
    ``pyagent serve`` replicas sharing a store that is a run queue keep the bound across all of
    them, counting runs that hold a live lease: the others stay queued.
    """
    executor: str | None = None  # None: the configured executor (settings.executor), else "local"
    executor_options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    input_model: Any = None
    """The type of the workflow's input (a pydantic model, or any type pydantic validates).

    Servers that publish the workflow (as an MCP tool, an A2A agent) give its JSON schema to
    callers and validate what they send before a run starts; ``run()`` itself takes any input.
    """

    _active: list[Any] = PrivateAttr(default_factory=list)
    _last: Any = PrivateAttr(default=None)
    _runtime_data: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _storable_name(cls, value: str) -> str:
        problem = unstorable(value)
        if problem:
            raise ValueError(f"workflow name {value!r} {problem}: rename the workflow")
        return value

    @field_validator("max_active_runs", mode="before")
    @classmethod
    def _max_active(cls, value: Any) -> Any:
        """A whole number >= 1 or None; pydantic would round 1.5 or parse "2" silently."""
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(
            f"max_active_runs={value!r}: give how many runs of the workflow may go on at once, "
            "as a whole number >= 1 (e.g. max_active_runs=4), or None for no bound")

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_are_tasks(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, (Task, ConditionalTask)) or not isinstance(value, (list, tuple)):
            raise ValueError("steps must be a list of Task/ConditionalTask objects")
        for i, step in enumerate(value):
            if not isinstance(step, (Task, ConditionalTask)):
                raise _step_error(i, step)
        return list(value)

    @field_validator("pattern", mode="before")
    @classmethod
    def _pattern_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, ExecutionPattern):
            name = value.strip().lower()
            try:
                return ExecutionPattern(name)
            except ValueError:
                return name
        return value

    @field_validator("input_model")
    @classmethod
    def _input_model_has_a_schema(cls, value: Any) -> Any:
        if value is None:
            return value
        from pydantic import TypeAdapter

        try:
            TypeAdapter(value).json_schema()
        except Exception as exc:
            raise ValueError(f"input_model {value!r} has no JSON schema ({type(exc).__name__}: {exc}): "
                             "use a pydantic model or a JSON-friendly type") from None
        return value

    @field_validator("reducer")
    @classmethod
    def _reducer_callable(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise ValueError(f"reducer must be callable, got {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _check_graph(self) -> Workflow:
        seen: dict[str, str] = {}
        for step in self.steps:
            names = [step.name]
            if isinstance(step, ConditionalTask):
                names += [b.name for b in step.branches]
            for name in names:
                if name in seen:
                    raise ValueError(
                        f"duplicate task name {name!r} in workflow {self.name!r}: task names "
                        "must be unique because results are kept by name; rename one"
                    )
                seen[name] = name
        owner = branch_owners(self.steps)
        for step in self.steps:
            for branch in step.branches if isinstance(step, ConditionalTask) else []:
                if branch.dependencies:
                    raise ValueError(
                        f"task {branch.name!r} is a branch of conditional {step.name!r}: it runs when "
                        "the conditional does, so its own dependencies would be ignored; declare them "
                        f"on the conditional: ConditionalTask(..., dependencies={branch.dependencies!r})"
                    )
            for dep in step.dependencies:
                if dep not in seen:
                    raise ValueError(
                        f"task {step.name!r} depends on {dep!r}, which is not a step of workflow "
                        f"{self.name!r}: add it to steps or fix the name (steps: {', '.join(seen)})"
                    )
                if dep == step.name:
                    raise ValueError(f"task {step.name!r} depends on itself: remove it from its dependencies")
                if owner.get(dep) == step.name:
                    raise ValueError(
                        f"conditional {step.name!r} depends on its own branch {dep!r}: a branch runs "
                        "after its condition, so remove it from the dependencies"
                    )
        # A dependency on a branch waits for the conditional that runs it.
        deps = {s.name: [owner.get(d, d) for d in s.dependencies] for s in self.steps}
        cycle = find_cycle(deps)
        if cycle:
            raise ValueError(
                f"dependency cycle in workflow {self.name!r}: {' -> '.join(cycle)}; "
                "a task cannot (indirectly) wait for itself: remove one of these dependencies"
            )
        return self

    # -- identity: workflows are compared and hashed by object, like tasks ----------------

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __pyagent_agent__(self) -> WorkflowAgent:
        """This workflow as one step of another (``Task(agent=workflow)``)."""
        return WorkflowAgent(self)

    # -- queries ---------------------------------------------------------------------------

    @property
    def pattern_name(self) -> str:
        """The pattern this workflow runs with, defaults applied."""
        if self.pattern is None:
            return "graph" if any(s.dependencies for s in self.steps) else "sequential"
        return self.pattern.value if isinstance(self.pattern, ExecutionPattern) else self.pattern

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
            if isinstance(s, ConditionalTask):
                for b in s.branches:
                    if b.name == name:
                        return b
        raise KeyError(f"workflow {self.name!r} has no task named {name!r}")

    @property
    def task_count(self) -> int:
        """How many tasks one run executes at most: a conditional step runs one of its branches."""
        return len(self.steps)

    @property
    def task_names(self) -> list[str]:
        names: list[str] = []
        for s in self.steps:
            if isinstance(s, ConditionalTask):
                names += [b.name for b in s.branches]
            else:
                names.append(s.name)
        return names

    # -- running ---------------------------------------------------------------------------

    async def run(
        self,
        input: Any = None,
        *,
        on_task_complete: Callable[[TaskResult], Any] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        run_id: str | None = None,
        wait_for_answers: bool = True,
    ) -> WorkflowResult:
        """Run the workflow once and return its result; a failed run is returned, not raised.

        A run whose agents ask people questions (``ctx.interrupt``) waits for the answers:
        here, holding the run, until it is answered (``orchestrator.resume``, ``pyagent
        approve``) and finishes. With ``wait_for_answers=False`` it returns a result with
        status ``waiting`` instead, and the run goes on when resumed (that needs a
        checkpoint store).
        """
        from pyagent.runner import run_workflow

        return await run_workflow(self, input, on_task_complete=on_task_complete,
                                  on_event=on_event, run_id=run_id, wait_for_answers=wait_for_answers)

    def run_sync(self, input: Any = None, **kwargs: Any) -> WorkflowResult:
        """Run from synchronous code (starts an event loop)."""
        import anyio

        from pyagent._sync import in_event_loop

        if in_event_loop():
            from pyagent.errors import ConfigurationError

            raise ConfigurationError(
                f"workflow {self.name!r}: run_sync() starts its own event loop, so it cannot be "
                "called inside a running event loop: use `await workflow.run(...)` there"
            )

        async def go() -> WorkflowResult:
            return await self.run(input, **kwargs)

        return anyio.run(go)

    # -- state, resume, metrics ------------------------------------------------------------

    def _circuit(self) -> dict[str, Any] | None:
        if self.circuit_breaker is None:
            return None
        from pyagent.durability.breakers import circuit_snapshot
        from pyagent.plugins import get_runtime

        return circuit_snapshot(self, get_runtime().clock)

    def get_state(self, run_id: str | None = None) -> WorkflowState:
        """Where the workflow stands: the running run (the latest one started), else the last one.

        Safe to call at any moment, also from another task while a run is going. With
        ``run_id`` it picks that run among the running and the last one.
        """
        from pyagent.durability.state import WorkflowState, initial_state

        runs = list(self._active)
        if self._last is not None:
            runs.insert(0, self._last)
        if run_id is not None:
            runs = [r for r in runs if r.run_id == run_id]
            if not runs:
                from pyagent.errors import StateError

                raise StateError(f"workflow {self.name!r} has no running or last run {run_id!r}")
        if not runs:
            return initial_state(self, self._circuit())
        return WorkflowState.of_run(runs[-1], self._circuit())

    def cancel(self, run_id: str, *, reason: str | None = None) -> bool:
        """Cancel a run of this workflow going on in this process: it ends ``cancelled``.

        Its running tasks are cancelled, it is checkpointed as cancelled (resume it later to go
        on) and its result's ``error`` gives ``reason``. Returns False when no run with that
        id is going on here (a run owned by another process cannot be cancelled from this one).
        Safe to call from any thread.
        """
        for run in list(self._active):
            if run.run_id == run_id:
                return bool(run.cancel(reason))
        return False

    def get_metrics(self) -> WorkflowMetrics:
        """Executions, success rate (0..1), durations (s), per-task breakdown and circuit state."""
        from pyagent.durability.metrics import metrics_for

        return metrics_for(self).snapshot(self._circuit())

    def resume_from(
        self,
        source: str | os.PathLike[str] | WorkflowState,
        *,
        storage: str | None = None,
        on_task_complete: Callable[[TaskResult], Any] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
        allow_plaintext: bool | None = None,
        wait_for_answers: bool = True,
    ) -> Any:
        """Continue a saved run: completed tasks are skipped and their outputs reused.

        A run that waits for people: its answered questions are returned to the tasks that
        asked them (which run again from their start), and its tasks whose questions are still
        open wait again without running; ``wait_for_answers`` as for :meth:`run`.

        ``source`` is a state file written by ``state.save(path)``, a ``WorkflowState``, or a
        run id in the checkpoint store (``storage=`` URL, default: this workflow's
        ``checkpointing["storage"]``). Returns the WorkflowResult from synchronous code and
        an awaitable inside a running event loop. A corrupt, foreign or incompatible state
        raises StateError before anything runs.

        The run is claimed in the store before anything is loaded or run: if another process
        owns it (it is running there, or was killed on another machine less than its lease
        ago) RunOwnedError names the owner, unless ``wait=True``, which waits up to
        ``wait_timeout`` seconds (default 60) for the claim. ``allow_plaintext=True`` reads
        unencrypted state saved before ``PYAGENT_STATE_KEY`` was set (refused otherwise).
        """
        from pyagent._sync import run_or_await
        from pyagent.durability.state import WorkflowState
        from pyagent.errors import StateError
        from pyagent.runner import resume_run, resume_state

        kwargs: dict[str, Any] = {"on_task_complete": on_task_complete, "on_event": on_event,
                                  "wait": wait, "wait_timeout": wait_timeout, "wait_for_answers": wait_for_answers}
        if isinstance(source, WorkflowState):
            source.check_workflow(self, f"the state of run {source.run_id!r}")
            return run_or_await(lambda: resume_state(self, source, **kwargs))
        text = os.fspath(source)
        # A NUL cannot be in a path (os.path.exists would raise): such text is a (bad) run id.
        if "\x00" not in text and (isinstance(source, os.PathLike) or os.path.exists(text)
                                   or text.endswith(".json")):
            state = WorkflowState.load(text, workflow=self.name, allow_plaintext=allow_plaintext)
            state.check_workflow(self, f"state file {text!r}")
            return run_or_await(lambda: resume_state(self, state, **kwargs))
        url = storage or (self.checkpointing.storage if self.checkpointing is not None else None)
        if url is None:
            raise StateError(
                f"{text!r} is not a state file, and workflow {self.name!r} has no checkpoint "
                "storage to look it up as a run id: pass a file path, or storage='sqlite://...', "
                "or configure checkpointing={'storage': ...}"
            )
        return run_or_await(lambda: resume_run(self, text, url, allow_plaintext=allow_plaintext, **kwargs))
