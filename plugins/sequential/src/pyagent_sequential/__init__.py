"""The sequential pattern: each step's output is the next step's input; the first failure stops the run."""

from __future__ import annotations

from typing import Any

from pyagent import hookimpl
from pyagent.engine import WorkflowRun
from pyagent.tasks import TaskStatus

_COMPLETED = TaskStatus.COMPLETED


class SequentialPattern:
    """Pass-forward chain with fail-fast (a step with ``continue_on_error`` is stepped over)."""

    name = "sequential"

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
