"""The names the user's specification imports from ``pyagent.orchestrator``."""

from __future__ import annotations

from .controller import Orchestrator
from .history import ExecutionRecord
from .metrics import TaskMetrics, WorkflowMetrics
from .patterns import AgentPatterns, TeamResult
from .policies import CheckpointConfig, CircuitBreakerConfig
from .results import TaskResult, WorkflowResult
from .state import WorkflowState
from .tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from .workflow import ExecutionPattern, Workflow

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
