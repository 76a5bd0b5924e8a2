"""The sequential pattern: each step's output is the next step's input; the first failure stops the run."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import (
    ConditionalTask,
    ConfigurationError,
    TaskStatus,
    Workflow,
    WorkflowRun,
    hookimpl,
)

_COMPLETED = TaskStatus.COMPLETED


class SequentialPattern:
    """Pass-forward chain with fail-fast (a step with ``continue_on_error`` is stepped over)."""

    name = "sequential"

    def validate(self, workflow: Workflow) -> None:
        """Steps run in list order, so a dependency must be an earlier step; a later one would be ignored.

        Settings that only the parallel pattern reads are refused rather than silently ignored.
        """
        if workflow.reducer is not None:
            raise ConfigurationError(
                f"workflow {workflow.name!r} runs sequentially, but reducer= only applies to the "
                "parallel pattern: remove it (the last step's output is the result), or use "
                "pattern=ExecutionPattern.PARALLEL"
            )
        if workflow.failure_policy == "collect":
            raise ConfigurationError(
                f"workflow {workflow.name!r} runs sequentially, where failure_policy='collect' has no "
                "meaning: to step over a failing task, give it continue_on_error=True"
            )
        position: dict[str, int] = {}
        for i, step in enumerate(workflow.steps):
            position[step.name] = i
            if isinstance(step, ConditionalTask):
                position.update((b.name, i) for b in step.branches)
        for i, step in enumerate(workflow.steps):
            for dep in step.dependencies:
                if position.get(dep, -1) >= i:
                    raise ConfigurationError(
                        f"task {step.name!r} depends on {dep!r}, which comes after it in sequential "
                        f"workflow {workflow.name!r}: move {dep!r} before {step.name!r}, or run the "
                        "workflow as a graph (pattern=ExecutionPattern.GRAPH)"
                    )

    async def execute(self, run: WorkflowRun) -> Any:
        value = run.input
        run_step = run.run_step
        for step in run.workflow.steps:
            rec = await run_step(step, value)
            # A failed continue_on_error step or a skipped branch passes the previous value on.
            if rec.status is _COMPLETED:
                value = rec.output
        return value


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("sequential", SequentialPattern())
