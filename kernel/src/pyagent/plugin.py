"""The plugin API: everything a pyagent plugin needs, in one module.

A plugin imports the kernel only from here and from the user API (:mod:`pyagent`,
:mod:`pyagent.orchestrator`, :mod:`pyagent.testing`); the built-in plugins do exactly that, so
a third-party plugin can do anything ours do. Every other kernel module is private and may
change between releases.

::

    from pyagent.plugin import hookimpl, WorkflowRun, TaskGroup

    class Race:
        async def execute(self, run: WorkflowRun) -> object: ...

    @hookimpl
    def pyagent_register_patterns(register):
        register("race", Race())

What is here, by kind of plugin:

- every plugin: :data:`hookimpl`, the errors, :func:`get_runtime` (registries, the clock,
  :meth:`Runtime.broadcast` for events outside a run)
- workflow patterns: :class:`WorkflowRun` (``run.run_step(step, input)``), :class:`Task`,
  :class:`ConditionalTask`, :class:`Workflow`, :class:`TaskStatus`, :class:`TaskResult`,
  :class:`TaskGroup`, :func:`first_error`, :func:`large_fanout`,
  :func:`cancels_unstarted_children`, :func:`find_cycle`
- team patterns: :class:`TeamResult`, :func:`call_agent`, :func:`check_timeout`,
  :class:`RunContext`, :class:`Message`, :func:`as_agent`, :func:`as_agents`,
  :func:`render_input`, :func:`current_run`, :func:`announce_handoff`
- routers: :func:`score_agents`, :func:`resolve_router`
- stores: the :class:`Store` protocol with :class:`RunHeader`, :class:`Checkpoint`,
  :class:`StoredRun`
- monitors: :class:`Event` and :mod:`events` (the event kinds, e.g. ``events.TASK_FAILED``)
- triggers: :class:`TriggerHost` (what ``serve(host)`` gets: ``submit``, ``record_skipped``,
  ``clock``, ``run_status``), :class:`Submission`, :class:`NotAcceptingError`,
  :class:`EventPayload`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light names, imported at once: every plugin module imports this module at discovery.
from pyagent.errors import (
    CheckpointConflictError,
    CircuitOpenError,
    ConfigurationError,
    DriverLoadFailure,
    HandoffLoopError,
    ModelNotConfiguredError,
    NotAcceptingError,
    PluginLoadError,
    PluginNotInstalledError,
    PyAgentError,
    StateError,
    TaskFailedError,
)
from pyagent.hookspecs import hookimpl, hookspec
from pyagent.model import events
from pyagent.model.events import Event, EventPayload
from pyagent.plugins import Runtime, get_runtime

if TYPE_CHECKING:
    from pyagent.durability.store import Checkpoint, RunHeader, Store, StoredRun
    from pyagent.engine.concurrency import (
        TaskGroup,
        cancels_unstarted_children,
        first_error,
        large_fanout,
    )
    from pyagent.engine.run import WorkflowRun, current_run
    from pyagent.engine.teams import TeamResult, call_agent, check_timeout
    from pyagent.handoffs import announce_handoff, resolve_router, score_agents
    from pyagent.model.agents import (
        Agent,
        FunctionAgent,
        InstructionAgent,
        Model,
        agent,
        as_agent,
        as_agents,
        render_input,
        render_prompt,
    )
    from pyagent.model.context import Message, RunContext
    from pyagent.model.results import Attempt, TaskResult, WorkflowResult, short_repr
    from pyagent.model.tasks import ConditionalTask, RetryConfig, Step, Task, TaskStatus
    from pyagent.serving.host import Submission, TriggerHost
    from pyagent.workflow import Workflow, find_cycle

# The rest is loaded on first use, so discovering plugins stays fast.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["Checkpoint", "RunHeader", "Store", "StoredRun"], "pyagent.durability.store"),
    **dict.fromkeys(["TaskGroup", "cancels_unstarted_children", "first_error", "large_fanout"],
                    "pyagent.engine.concurrency"),
    **dict.fromkeys(["WorkflowRun", "current_run"], "pyagent.engine.run"),
    **dict.fromkeys(["TeamResult", "call_agent", "check_timeout"], "pyagent.engine.teams"),
    **dict.fromkeys(["announce_handoff", "resolve_router", "score_agents"], "pyagent.handoffs"),
    **dict.fromkeys(["Agent", "FunctionAgent", "InstructionAgent", "Model", "agent", "as_agent",
                     "as_agents", "render_input", "render_prompt"], "pyagent.model.agents"),
    **dict.fromkeys(["Message", "RunContext"], "pyagent.model.context"),
    **dict.fromkeys(["Attempt", "TaskResult", "WorkflowResult", "short_repr"], "pyagent.model.results"),
    **dict.fromkeys(["ConditionalTask", "RetryConfig", "Step", "Task", "TaskStatus"],
                    "pyagent.model.tasks"),
    **dict.fromkeys(["Workflow", "find_cycle"], "pyagent.workflow"),
    **dict.fromkeys(["Submission", "TriggerHost"], "pyagent.serving.host"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyagent.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Agent",
    "Attempt",
    "Checkpoint",
    "CheckpointConflictError",
    "CircuitOpenError",
    "ConditionalTask",
    "ConfigurationError",
    "DriverLoadFailure",
    "Event",
    "EventPayload",
    "FunctionAgent",
    "HandoffLoopError",
    "InstructionAgent",
    "Message",
    "Model",
    "ModelNotConfiguredError",
    "NotAcceptingError",
    "PluginLoadError",
    "PluginNotInstalledError",
    "PyAgentError",
    "RetryConfig",
    "RunContext",
    "RunHeader",
    "Runtime",
    "StateError",
    "Step",
    "Store",
    "StoredRun",
    "Submission",
    "Task",
    "TaskFailedError",
    "TaskGroup",
    "TaskResult",
    "TaskStatus",
    "TeamResult",
    "TriggerHost",
    "Workflow",
    "WorkflowResult",
    "WorkflowRun",
    "agent",
    "announce_handoff",
    "as_agent",
    "as_agents",
    "call_agent",
    "cancels_unstarted_children",
    "check_timeout",
    "current_run",
    "events",
    "find_cycle",
    "first_error",
    "get_runtime",
    "hookimpl",
    "hookspec",
    "large_fanout",
    "render_input",
    "render_prompt",
    "resolve_router",
    "score_agents",
    "short_repr",
]
