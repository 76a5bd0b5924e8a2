"""pyagent: a plugin microkernel for multi-agent workflows.

The public API: this module (building and running workflows), :mod:`pyagent.orchestrator`
(the names the specification imports), :mod:`pyagent.monitors` (monitors by class name and
by configured name), :mod:`pyagent.plugin` (everything a plugin author needs) and
:mod:`pyagent.testing`. Everything else is private and may change.

The kernel is layered, bottom to top; a lower layer never imports a higher one at run time:

1. base: ``errors``, ``config``, ``clock``, ``hookspecs``, ``plugins`` (discovery and registries)
2. ``model/``: agents, tasks, the run context, results, events, policies
3. ``engine/``: one run of a workflow, task policies, task groups, the circuit breaker
4. ``durability/``: encoding, the store protocol, state files, checkpoints, run ownership (leases),
   history, metrics
5. api: ``workflow``, ``runner``, ``controller`` (Orchestrator), ``patterns``, ``handoffs``,
   ``cli``, ``serving/`` (what ``orchestrator.serve()`` runs: triggers, recorded runs, drain),
   and the public modules above and :mod:`pyagent.guardrails` (the built-in guardrails)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyagent import _compat
from pyagent.controller import Orchestrator
from pyagent.errors import (
    AnswerValidationError,
    CapabilityError,
    CheckpointConflictError,
    CircuitOpenError,
    ConfigurationError,
    GuardrailError,
    HandoffLoopError,
    InterruptAnsweredError,
    InterruptError,
    InterruptNotFoundError,
    InterruptTimeoutError,
    ModelError,
    ModelNotConfiguredError,
    PluginNotInstalledError,
    PyAgentError,
    RunCancelledError,
    RunOwnedError,
    StateError,
    StoreError,
    StructuredOutputError,
    TaskFailedError,
)
from pyagent.hookspecs import hookimpl
from pyagent.model.agents import Agent, FunctionAgent, InstructionAgent, agent
from pyagent.model.context import Message, RunContext
from pyagent.model.events import Event
from pyagent.model.language import Model, Usage
from pyagent.model.results import TaskResult, WorkflowResult
from pyagent.model.tasks import ConditionalTask, RetryConfig, Task, TaskStatus
from pyagent.workflow import ExecutionPattern, Workflow

if TYPE_CHECKING:
    from pyagent.durability.codec import register_serializer, unregister_serializer
    from pyagent.handoffs import handoff
    from pyagent.model.approval import ApprovalRejectedError, ApprovalTask
    from pyagent.model.interrupts import Approval, Escalation, Interrupt
    from pyagent.model.tools import Tool, tool

__version__ = "0.1.0"

_compat.install()

# Loaded on first use, so `import pyagent` stays fast.
_LAZY = {
    "handoff": ("pyagent.handoffs", "handoff"),
    "register_serializer": ("pyagent.durability.codec", "register_serializer"),
    "unregister_serializer": ("pyagent.durability.codec", "unregister_serializer"),
    "Tool": ("pyagent.model.tools", "Tool"),
    "ApprovalTask": ("pyagent.model.approval", "ApprovalTask"),
    "ApprovalRejectedError": ("pyagent.model.approval", "ApprovalRejectedError"),
    "Approval": ("pyagent.model.interrupts", "Approval"),
    "Escalation": ("pyagent.model.interrupts", "Escalation"),
    "Interrupt": ("pyagent.model.interrupts", "Interrupt"),
    "tool": ("pyagent.model.tools", "tool"),
}


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
    "AnswerValidationError",
    "Approval",
    "ApprovalRejectedError",
    "ApprovalTask",
    "CapabilityError",
    "CheckpointConflictError",
    "CircuitOpenError",
    "ConditionalTask",
    "ConfigurationError",
    "Escalation",
    "Event",
    "ExecutionPattern",
    "FunctionAgent",
    "GuardrailError",
    "HandoffLoopError",
    "InstructionAgent",
    "Interrupt",
    "InterruptAnsweredError",
    "InterruptError",
    "InterruptNotFoundError",
    "InterruptTimeoutError",
    "Message",
    "Model",
    "ModelError",
    "ModelNotConfiguredError",
    "Orchestrator",
    "PluginNotInstalledError",
    "PyAgentError",
    "RetryConfig",
    "RunCancelledError",
    "RunContext",
    "RunOwnedError",
    "StateError",
    "StoreError",
    "StructuredOutputError",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskStatus",
    "Tool",
    "Usage",
    "Workflow",
    "WorkflowResult",
    "agent",
    "handoff",
    "hookimpl",
    "register_serializer",
    "tool",
    "unregister_serializer",
]
