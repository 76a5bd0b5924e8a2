"""The names the user's specification imports from ``pyagent.orchestrator``."""

from __future__ import annotations

from .controller import Orchestrator
from .patterns import AgentPatterns, TeamResult
from .policies import CheckpointConfig, CircuitBreakerConfig
from .results import TaskResult, WorkflowResult
from .tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from .workflow import ExecutionPattern, Workflow

__all__ = [
    "AgentPatterns",
    "TeamResult",
    "CheckpointConfig",
    "CircuitBreakerConfig",
    "ConditionalTask",
    "ExecutionPattern",
    "Orchestrator",
    "RetryConfig",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowResult",
]
