"""The names the user's specification imports from ``pyagent.orchestrator``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .controller import Orchestrator
from .policies import CheckpointConfig, CircuitBreakerConfig
from .results import TaskResult, WorkflowResult
from .tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from .workflow import ExecutionPattern, Workflow

if TYPE_CHECKING:
    from .history import ExecutionRecord
    from .metrics import TaskMetrics, WorkflowMetrics
    from .patterns import AgentPatterns, TeamResult
    from .state import WorkflowState

# Loaded on first use, so importing the common names stays fast.
_LAZY = {
    "AgentPatterns": ".patterns",
    "TeamResult": ".patterns",
    "ExecutionRecord": ".history",
    "TaskMetrics": ".metrics",
    "WorkflowMetrics": ".metrics",
    "WorkflowState": ".state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyagent.orchestrator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, "pyagent"), name)
    globals()[name] = value
    return value

__all__ = [
    "AgentPatterns",
    "CheckpointConfig",
    "CircuitBreakerConfig",
    "ConditionalTask",
    "ExecutionPattern",
    "ExecutionRecord",
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
