"""Where the calling code is, so nested workflows and teams are shown under the task that runs them.

Set while a task runs, in the task's own context: a sub-workflow or a team pattern that the
task's agent starts reads it when its first event arrives.
"""

from __future__ import annotations

import contextvars

# Plain lines: how deep the code that emits the next event is nested.
depth_var: contextvars.ContextVar[int] = contextvars.ContextVar("pyagent_console_depth", default=0)
# Live view: the (run id, task) whose agent is running here.
where_var: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "pyagent_console_where", default=None)
