"""pyagent: a plugin microkernel for multi-agent workflows.

The public API: this module (building and running workflows), :mod:`pyagent.orchestrator`
(the names the specification imports), :mod:`pyagent.plugin` (everything a plugin author
needs) and :mod:`pyagent.testing`. Everything else is private and may change.

The kernel is layered, bottom to top; a lower layer never imports a higher one at run time:

1. base: ``errors``, ``config``, ``clock``, ``hookspecs``, ``plugins`` (discovery and registries)
2. ``model/``: agents, tasks, the run context, results, events, policies
3. ``engine/``: one run of a workflow, task policies, task groups, the circuit breaker
4. ``durability/``: encoding, the store protocol, state files, checkpoints, history, metrics
5. api: ``workflow``, ``runner``, ``controller`` (Orchestrator), ``serving/`` (what
   ``orchestrator.serve()`` runs: triggers, recorded runs, drain), ``patterns``, ``handoffs``,
   ``cli``, and the public modules above
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent import _compat
from pyagent.controller import Orchestrator
from pyagent.errors import (
    CheckpointConflictError,
    CircuitOpenError,
    ConfigurationError,
    HandoffLoopError,
    ModelNotConfiguredError,
    PluginNotInstalledError,
    PyAgentError,
    StateError,
    TaskFailedError,
)
from pyagent.hookspecs import hookimpl
from pyagent.model.agents import Agent, FunctionAgent, InstructionAgent, Model, agent
from pyagent.model.context import Message, RunContext
from pyagent.model.events import Event
from pyagent.model.results import TaskResult, WorkflowResult
from pyagent.model.tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from pyagent.workflow import ExecutionPattern, Workflow

if TYPE_CHECKING:
    from pyagent.handoffs import handoff

__version__ = "0.1.0"

_compat.install()

# Loaded on first use, so `import pyagent` stays fast.
_LAZY = {"handoff": ("pyagent.handoffs", "handoff")}


def __getattr__(name: str) -> Any:
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'pyagent' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(spec[0]), spec[1])
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "CheckpointConflictError",
    "CircuitOpenError",
    "ConditionalTask",
    "ConfigurationError",
    "Event",
    "ExecutionPattern",
    "FunctionAgent",
    "HandoffLoopError",
    "InstructionAgent",
    "Message",
    "Model",
    "ModelNotConfiguredError",
    "Orchestrator",
    "PluginNotInstalledError",
    "PyAgentError",
    "RetryConfig",
    "RunContext",
    "StateError",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowResult",
    "agent",
    "handoff",
    "hookimpl",
]
