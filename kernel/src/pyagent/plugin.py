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
  :meth:`Runtime.broadcast` for events outside a run), :func:`get_settings` (the process's
  :class:`Settings`: a plugin reads its own table, e.g. ``get_settings().mcp``)
- workflow patterns: :class:`WorkflowRun` (``run.run_step(step, input)``), :class:`Task`,
  :class:`ConditionalTask`, :class:`Workflow`, :class:`TaskStatus`, :class:`TaskResult`,
  :class:`TaskGroup`, :func:`first_error`, :func:`large_fanout`,
  :func:`cancels_unstarted_children`, :func:`find_cycle`
- team patterns: :class:`TeamResult`, :func:`call_agent`, :func:`check_timeout`,
  :class:`RunContext`, :class:`Message`, :func:`as_agent`, :func:`as_agents`,
  :func:`render_input`, :func:`current_run`, :func:`run_or_await` (the one-call helpers that
  return a result from sync code and an awaitable inside a loop)
- executors: :func:`run_scope` (what :func:`current_run` and :func:`current_task` return while
  an agent runs away from its run, on a cluster's worker)
- handoffs: :class:`HandoffSession` (runs agents, follows their transfers within the hop
  limit and the agents' ``can_handoff_to`` grants, keeps the audit trail), :class:`HandoffResult`,
  :class:`HandoffRecord`, :class:`HandoffFailure`, :class:`Transfer`, :func:`max_hops_setting`,
  :func:`announce_handoff`
- model plugins (a tool-call loop): :func:`check_tool_call` before running a tool the model
  asked for (raises :class:`CapabilityError` unless the tool is in the agent's ``tools=``), then
  :func:`record_denial` to audit the refusal and ``error.refusal`` as the text the model is
  given back; :class:`GuardrailError` is what an agent's guardrails raise from its ``run()``
- tool sources (tools found when an agent runs, e.g. an MCP server's): :class:`ToolSource`
  (``name`` and ``async load_tools(scope)``), :class:`ToolScope` (what a run's sources opened,
  closed when the run ends), :func:`shared_tool_scope` (one per event loop, for pooling);
  :meth:`Tool.from_schema` for a tool described by a JSON schema
- command-line plugins (``pyagent_register_commands``): :func:`load_target` (``FILE[:NAME]`` as
  a :class:`LoadedTarget`: its workflows, agents and orchestrator)
- routers: :func:`score_agents`, :func:`resolve_router`
- models: :class:`Model` and what it exchanges with an agent (:class:`ModelRequest`,
  :class:`ModelResponse`, :class:`ToolCall`, :class:`ToolSpec`, :class:`OutputSpec`,
  :class:`Usage`), :class:`ModelError` for failed calls, :func:`check_models`
- stores: the :class:`Store` protocol with :class:`RunHeader`, :class:`Checkpoint`,
  :class:`StoredRun`, :class:`Lease`, :class:`InterruptRecord` (a question a run asked),
  :class:`Claim` (a run a queue store's ``dequeue_runs`` hands out, with its lease);
  :func:`supports_queue` (whether a store is a run queue: ``request_cancel`` reaches runs
  other processes hold);
  :class:`StoreError`, :class:`RunOwnedError` and :class:`CheckpointConflictError` to raise;
  optionally :class:`BreakerStore` (``get_breaker``, ``swap_breaker`` over a :class:`BreakerRecord`)
  for circuit breakers shared across processes
- questions for people: :class:`Interrupt` (a question and its answer), the errors an answer
  is refused with (:class:`InterruptNotFoundError`, :class:`InterruptAnsweredError`,
  :class:`AnswerValidationError`) and :class:`InterruptTimeoutError`; :func:`list_questions`
  (a store's questions, pending ones by default) and :func:`record_answer` (an answer checked
  against its question's schema and recorded: what every way of answering goes through)
- reading runs back (dashboards, reports): :func:`open_store` and :func:`close_store` by URL,
  :func:`safe_url`; :func:`list_runs` (a page of :class:`ExecutionRecord`, paged in the store's
  query), :func:`list_headers` (the same page undecoded), :func:`read_run` (one run's
  :class:`RunDetails`: record, :class:`WorkflowState`, lease)
- monitors: :class:`Event` and :mod:`events` (the event kinds, e.g. ``events.TASK_FAILED``);
  for metrics monitors, :class:`MetricFold`, :data:`METRICS` (the catalogue) and
  :func:`bind_meter` (the catalogue on an OpenTelemetry meter)
- triggers: :class:`TriggerHost` (what ``serve(host)`` gets: ``submit``, ``record_skipped``,
  ``clock``, ``run_status``, ``question``, ``answer``, ``resume``), :class:`Submission`, :class:`NotAcceptingError`,
  :class:`EventPayload`; :class:`ScheduleTrigger` (what a schedule trigger offers its readers:
  ``next_runs``, ``pause``, ``resume``, ``last_fired``)
- web apps (``pyagent_register_web_apps``): :class:`WebApp` (one mounted in the serving HTTP
  server: ``path``, ``app``, ``plugin``; ``host.web_apps`` lists them)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light names, imported at once: every plugin module imports this module at discovery.
from pyagent.errors import (
    AnswerValidationError,
    CapabilityError,
    CheckpointConflictError,
    CircuitOpenError,
    ConfigurationError,
    DriverLoadFailure,
    GuardrailError,
    HandoffLoopError,
    InterruptAnsweredError,
    InterruptError,
    InterruptNotFoundError,
    InterruptTimeoutError,
    ModelError,
    ModelNotConfiguredError,
    NotAcceptingError,
    PluginLoadError,
    PluginNotInstalledError,
    PyAgentError,
    RunCancelledError,
    RunOwnedError,
    StateError,
    StoreError,
    StructuredOutputError,
    TaskFailedError,
)
from pyagent.hookspecs import hookimpl, hookspec
from pyagent.model import events
from pyagent.model.events import Event, EventPayload
from pyagent.plugins import Runtime, get_runtime

if TYPE_CHECKING:
    from pyagent._sync import in_event_loop, run_or_await
    from pyagent.cli.loading import LoadedTarget, load_target
    from pyagent.config import Settings, get_settings
    from pyagent.durability.browse import RunDetails, list_headers, list_runs, read_run
    from pyagent.durability.history import ExecutionRecord
    from pyagent.durability.interrupts import list_questions, record_answer
    from pyagent.durability.state import WorkflowState
    from pyagent.durability.store import (
        BreakerRecord,
        BreakerStore,
        Checkpoint,
        Claim,
        InterruptRecord,
        Lease,
        RunHeader,
        Store,
        StoredRun,
        supports_queue,
    )
    from pyagent.durability.stores import close_store, open_store, safe_url
    from pyagent.engine.concurrency import (
        TaskGroup,
        cancels_unstarted_children,
        first_error,
        large_fanout,
    )
    from pyagent.engine.run import WorkflowRun
    from pyagent.engine.teams import TeamResult, call_agent, check_timeout
    from pyagent.handoffs import (
        HandoffFailure,
        HandoffRecord,
        HandoffResult,
        HandoffSession,
        Transfer,
        announce_handoff,
        max_hops_setting,
        resolve_router,
        score_agents,
    )
    from pyagent.model.agents import (
        Agent,
        FunctionAgent,
        InstructionAgent,
        agent,
        as_agent,
        as_agents,
        check_models,
        render_input,
        render_prompt,
    )
    from pyagent.model.capabilities import check_tool_call, record_denial
    from pyagent.model.context import Message, RunContext, current_run, current_task, run_scope
    from pyagent.model.interrupts import Interrupt
    from pyagent.model.language import (
        Model,
        ModelRequest,
        ModelResponse,
        OutputSpec,
        ToolCall,
        ToolSpec,
        Usage,
    )
    from pyagent.model.results import Attempt, TaskResult, WorkflowResult
    from pyagent.model.tasks import ConditionalTask, RetryConfig, Step, Task, TaskStatus
    from pyagent.model.text import short_repr
    from pyagent.model.tools import Tool, tool
    from pyagent.model.toolsource import ToolScope, ToolSource, shared_tool_scope
    from pyagent.serving.host import Submission, TriggerHost
    from pyagent.serving.schedules import ScheduleTrigger
    from pyagent.serving.web import WebApp
    from pyagent.telemetry import BUCKETS, MetricFold, MetricInfo, bind_meter
    from pyagent.telemetry import CATALOGUE as METRICS
    from pyagent.workflow import Workflow, find_cycle

# The rest is loaded on first use, so discovering plugins stays fast.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["Checkpoint", "Claim", "InterruptRecord", "Lease", "RunHeader", "Store", "StoredRun",
                     "supports_queue"], "pyagent.durability.store"),
    **dict.fromkeys(["BreakerRecord", "BreakerStore"], "pyagent.durability.store"),
    "Interrupt": "pyagent.model.interrupts",
    **dict.fromkeys(["list_questions", "record_answer"], "pyagent.durability.interrupts"),
    **dict.fromkeys(["RunDetails", "list_headers", "list_runs", "read_run"], "pyagent.durability.browse"),
    "ExecutionRecord": "pyagent.durability.history",
    "WorkflowState": "pyagent.durability.state",
    **dict.fromkeys(["close_store", "open_store", "safe_url"], "pyagent.durability.stores"),
    **dict.fromkeys(["TaskGroup", "cancels_unstarted_children", "first_error", "large_fanout"],
                    "pyagent.engine.concurrency"),
    "WorkflowRun": "pyagent.engine.run",
    **dict.fromkeys(["TeamResult", "call_agent", "check_timeout"], "pyagent.engine.teams"),
    **dict.fromkeys(["HandoffFailure", "HandoffRecord", "HandoffResult", "HandoffSession", "Transfer",
                     "announce_handoff", "max_hops_setting", "resolve_router", "score_agents"],
                    "pyagent.handoffs"),
    **dict.fromkeys(["in_event_loop", "run_or_await"], "pyagent._sync"),
    **dict.fromkeys(["Agent", "FunctionAgent", "InstructionAgent", "agent", "as_agent",
                     "as_agents", "check_models", "render_input", "render_prompt"], "pyagent.model.agents"),
    **dict.fromkeys(["Model", "ModelRequest", "ModelResponse", "OutputSpec", "ToolCall", "ToolSpec", "Usage"],
                    "pyagent.model.language"),
    **dict.fromkeys(["Tool", "tool"], "pyagent.model.tools"),
    **dict.fromkeys(["ToolScope", "ToolSource", "shared_tool_scope"], "pyagent.model.toolsource"),
    **dict.fromkeys(["LoadedTarget", "load_target"], "pyagent.cli.loading"),
    **dict.fromkeys(["Settings", "get_settings"], "pyagent.config"),
    **dict.fromkeys(["Message", "RunContext", "current_run", "current_task", "run_scope"],
                    "pyagent.model.context"),
    **dict.fromkeys(["check_tool_call", "record_denial"], "pyagent.model.capabilities"),
    **dict.fromkeys(["Attempt", "TaskResult", "WorkflowResult"], "pyagent.model.results"),
    "short_repr": "pyagent.model.text",
    **dict.fromkeys(["ConditionalTask", "RetryConfig", "Step", "Task", "TaskStatus"],
                    "pyagent.model.tasks"),
    **dict.fromkeys(["Workflow", "find_cycle"], "pyagent.workflow"),
    **dict.fromkeys(["BUCKETS", "MetricFold", "MetricInfo", "bind_meter"], "pyagent.telemetry"),
    **dict.fromkeys(["Submission", "TriggerHost"], "pyagent.serving.host"),
    "ScheduleTrigger": "pyagent.serving.schedules",
    "WebApp": "pyagent.serving.web",
}
_RENAMED = {"METRICS": ("pyagent.telemetry", "CATALOGUE")}


def __getattr__(name: str) -> Any:
    module, attr = _LAZY.get(name), name
    if module is None and name in _RENAMED:
        module, attr = _RENAMED[name]
    if module is None:
        raise AttributeError(f"module 'pyagent.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BUCKETS",
    "METRICS",
    "Agent",
    "AnswerValidationError",
    "Attempt",
    "BreakerRecord",
    "BreakerStore",
    "CapabilityError",
    "Checkpoint",
    "CheckpointConflictError",
    "CircuitOpenError",
    "Claim",
    "ConditionalTask",
    "ConfigurationError",
    "DriverLoadFailure",
    "Event",
    "EventPayload",
    "ExecutionRecord",
    "FunctionAgent",
    "GuardrailError",
    "HandoffFailure",
    "HandoffLoopError",
    "HandoffRecord",
    "HandoffResult",
    "HandoffSession",
    "InstructionAgent",
    "Interrupt",
    "InterruptAnsweredError",
    "InterruptError",
    "InterruptNotFoundError",
    "InterruptRecord",
    "InterruptTimeoutError",
    "Lease",
    "LoadedTarget",
    "Message",
    "MetricFold",
    "MetricInfo",
    "Model",
    "ModelError",
    "ModelNotConfiguredError",
    "ModelRequest",
    "ModelResponse",
    "NotAcceptingError",
    "OutputSpec",
    "PluginLoadError",
    "PluginNotInstalledError",
    "PyAgentError",
    "RetryConfig",
    "RunCancelledError",
    "RunContext",
    "RunDetails",
    "RunHeader",
    "RunOwnedError",
    "Runtime",
    "ScheduleTrigger",
    "Settings",
    "StateError",
    "Step",
    "Store",
    "StoreError",
    "StoredRun",
    "StructuredOutputError",
    "Submission",
    "Task",
    "TaskFailedError",
    "TaskGroup",
    "TaskResult",
    "TaskStatus",
    "TeamResult",
    "Tool",
    "ToolCall",
    "ToolScope",
    "ToolSource",
    "ToolSpec",
    "Transfer",
    "TriggerHost",
    "Usage",
    "WebApp",
    "Workflow",
    "WorkflowResult",
    "WorkflowRun",
    "WorkflowState",
    "agent",
    "announce_handoff",
    "as_agent",
    "as_agents",
    "bind_meter",
    "call_agent",
    "cancels_unstarted_children",
    "check_models",
    "check_timeout",
    "check_tool_call",
    "close_store",
    "current_run",
    "current_task",
    "events",
    "find_cycle",
    "first_error",
    "get_runtime",
    "get_settings",
    "hookimpl",
    "hookspec",
    "in_event_loop",
    "large_fanout",
    "list_headers",
    "list_questions",
    "list_runs",
    "load_target",
    "max_hops_setting",
    "open_store",
    "read_run",
    "record_answer",
    "record_denial",
    "render_input",
    "render_prompt",
    "resolve_router",
    "run_or_await",
    "run_scope",
    "safe_url",
    "score_agents",
    "shared_tool_scope",
    "short_repr",
    "supports_queue",
    "tool",
]
