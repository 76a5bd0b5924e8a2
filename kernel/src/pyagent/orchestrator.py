"""The names the user's specification imports from ``pyagent.orchestrator``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent.controller import Orchestrator
from pyagent.model.policies import CheckpointConfig, CircuitBreakerConfig
from pyagent.model.results import TaskResult, WorkflowResult
from pyagent.model.tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from pyagent.workflow import ExecutionPattern, Workflow

if TYPE_CHECKING:
    from pyagent.durability.history import ExecutionRecord
    from pyagent.durability.metrics import TaskMetrics, WorkflowMetrics
    from pyagent.durability.state import WorkflowState
    from pyagent.model.approval import ApprovalTask
    from pyagent.model.interrupts import Approval, Escalation, Interrupt
    from pyagent.patterns import AgentPatterns, TeamResult

# Loaded on first use, so importing the common names stays fast.
_LAZY = {
    "AgentPatterns": "pyagent.patterns",
    "ApprovalTask": "pyagent.model.approval",
    "Approval": "pyagent.model.interrupts",
    "Escalation": "pyagent.model.interrupts",
    "Interrupt": "pyagent.model.interrupts",
    "TeamResult": "pyagent.engine.teams",
    "ExecutionRecord": "pyagent.durability.history",
    "TaskMetrics": "pyagent.durability.metrics",
    "WorkflowMetrics": "pyagent.durability.metrics",
    "WorkflowState": "pyagent.durability.state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyagent.orchestrator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "AgentPatterns",
    "Approval",
    "ApprovalTask",
    "CheckpointConfig",
    "CircuitBreakerConfig",
    "ConditionalTask",
    "Escalation",
    "ExecutionPattern",
    "ExecutionRecord",
    "Interrupt",
    "Orchestrator",
    "RetryConfig",
    "Task",
    "TaskMetrics",
    "TaskResult",
    "TaskStatus",
    "TeamResult",
    "Workflow",
    "WorkflowMetrics",
    "WorkflowResult",
    "WorkflowState",
]
