"""Where the data model reports what a policy did (a guardrail block, a denied tool call).

Inside a workflow run, the run keeps it in its audit trail (and so in its history) and delivers
it to its listeners; outside any run it is broadcast to every monitor. The run is found from
the agent's context or, for agents a team pattern calls inside a task, from the engine: the
engine registers how to find the current run (:func:`use_current_run`), because this layer
sits below it and never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyagent.model.context import RunContext

_current_run: Callable[[], Any] = lambda: None  # noqa: E731 - replaced by the engine


def use_current_run(lookup: Callable[[], Any]) -> None:
    """Tell this layer how to find the workflow run the calling code is part of."""
    global _current_run
    _current_run = lookup


def report(kind: str, data: dict[str, Any], *, ctx: RunContext | None = None,
           source: str = "") -> None:
    """Record ``kind`` in the current run's audit trail, or broadcast it when there is no run.

    ``source`` is the event's ``workflow`` outside a run (the pattern or agent it came from).
    """
    run = ctx.run if ctx is not None else None
    if run is None:
        run = _current_run()
    task = ctx.task.name if ctx is not None and ctx.task is not None else None
    if run is not None:
        run.audit(kind, task, **data)
        return
    from pyagent.model.events import Event
    from pyagent.plugins import get_runtime

    runtime = get_runtime()
    now = runtime.clock.time()
    runtime.broadcast(Event(kind, workflow=source, run_id=ctx.run_id if ctx is not None else "",
                            task=task, timestamp=now, data={"timestamp": now, **data}))
