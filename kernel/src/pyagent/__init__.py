"""pyagent: a plugin microkernel for multi-agent workflows."""

from __future__ import annotations

from .agents import Agent, FunctionAgent, InstructionAgent, Model, agent
from .context import Message, RunContext
from .controller import Orchestrator
from .errors import (
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
from .handoff import handoff
from .hookspecs import hookimpl
from .results import TaskResult, WorkflowResult
from .tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from .workflow import ExecutionPattern, Workflow

__version__ = "0.1.0"

__all__ = [
    "Agent",
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
