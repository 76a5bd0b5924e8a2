"""pyagent: a plugin microkernel for multi-agent workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .agents import Agent, FunctionAgent, InstructionAgent, Model, agent
from .context import Message, RunContext
from .controller import Orchestrator
from .errors import (
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
from .events import Event
from .hookspecs import hookimpl
from .results import TaskResult, WorkflowResult
from .tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from .workflow import ExecutionPattern, Workflow

if TYPE_CHECKING:
    from .handoffs import handoff

__version__ = "0.1.0"

# Loaded on first use, so `import pyagent` stays fast.
_LAZY = {"handoff": (".handoffs", "handoff")}


def __getattr__(name: str) -> Any:
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'pyagent' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(spec[0], __name__), spec[1])
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
