"""Where the data model reports what a policy did (a guardrail block, a denied tool call).

Inside a workflow run, the run keeps it in its audit trail (and so in its history) and delivers
it to its listeners; outside any run it is broadcast to every monitor. The run is found from
the agent's context or, for agents a team pattern calls inside a task, from the context
variable the engine sets while a run executes (:func:`pyagent.model.context.current_run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.model.context import current_run, current_task

if TYPE_CHECKING:
    from pyagent.model.context import RunContext


def report(kind: str, data: dict[str, Any], *, ctx: RunContext | None = None,
           source: str = "") -> None:
    """Record ``kind`` in the current run's audit trail, or broadcast it when there is no run.

    ``source`` is the event's ``workflow`` outside a run (the pattern or agent it came from).
    """
    run = ctx.run if ctx is not None else None
    task = ctx.task.name if ctx is not None and ctx.task is not None else None
    if run is None:
        run = current_run()
        if run is not None and task is None:
            task = current_task()  # an agent a team pattern calls: the task running the pattern
    if run is not None:
        run.audit(kind, task, **data)
        return
    from pyagent.model.events import Event
    from pyagent.plugins import get_runtime

    runtime = get_runtime()
    now = runtime.clock.time()
    runtime.broadcast(Event(kind, workflow=source, run_id=ctx.run_id if ctx is not None else "",
                            task=task, timestamp=now, data={"timestamp": now, **data}))
