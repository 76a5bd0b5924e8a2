"""Workflow metrics: executions, success rate, durations and a per-task breakdown.

Counted per workflow object in the process, updated once per finished run (a loop over its
task records). p95 durations are computed over each task's last 1,000 executions.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from pyagent.model.language import Usage
from pyagent.model.tasks import TaskStatus

if TYPE_CHECKING:
    from pyagent.model.results import WorkflowResult
    from pyagent.workflow import Workflow

SAMPLES = 1000
_COMPLETED = TaskStatus.COMPLETED
_FAILED = TaskStatus.FAILED
_CANCELLED = TaskStatus.CANCELLED


class TaskMetrics(BaseModel):
    """One task's figures: executions (reused and skipped ones are not executions)."""

    executions: int = 0
    successes: int = 0
    failures: int = 0
    success_rate: float = 0.0
    avg_duration: float = 0.0
    p95_duration: float = 0.0
    retries: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_requests: int = 0
    cost: float | None = None
    tool_calls: int = 0


class WorkflowMetrics(BaseModel):
    """A workflow's figures. ``success_rate`` is a fraction (0..1), durations are seconds.

    Runs refused by an open circuit breaker are counted in ``rejected``, not in
    ``total_executions`` (they never executed). ``input_tokens``, ``output_tokens``,
    ``model_requests`` and ``cost`` (USD, when a price table is configured) add up the
    language-model calls of every execution.
    """

    workflow: str
    total_executions: int = 0
    successful: int = 0
    failed: int = 0
    cancelled: int = 0
    success_rate: float = 0.0
    avg_duration: float = 0.0
    p95_duration: float = 0.0
    rejected: int = 0
    task_breakdown: dict[str, TaskMetrics] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    model_requests: int = 0
    cost: float | None = None
    circuit_state: str | None = None
    circuit: dict[str, Any] | None = None


def p95(samples: Any) -> float:
    """The 95th percentile (nearest rank) of ``samples``; 0.0 when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return float(ordered[rank - 1])


PENDING_LIMIT = 32


class _TaskStats:
    __slots__ = ("durations", "executions", "fallbacks", "retries", "successes", "timed", "tool_calls",
                 "total_time", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.tool_calls = 0
        self.executions = 0
        self.successes = 0
        self.retries = 0
        self.fallbacks = 0
        self.total_time = 0.0
        self.timed = 0
        self.durations: deque[float] = deque(maxlen=SAMPLES)


class MetricsCollector:
    """Accumulates finished runs of one workflow."""

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self._lock = threading.Lock()
        self.runs = 0
        self.successful = 0
        self.failed = 0
        self.cancelled = 0
        self.rejected = 0
        self.total_time = 0.0
        self.timed = 0
        self.durations: deque[float] = deque(maxlen=SAMPLES)
        self.tasks: dict[str, _TaskStats] = {}
        self.usage: Usage | None = None
        # Per-task figures are folded lazily: a run only queues its result (O(1)); the fold
        # (O(tasks)) happens when metrics are read or PENDING_LIMIT runs have queued, so a
        # 10,000-task run does not pay for its breakdown before returning.
        self._pending: list[WorkflowResult] = []

    def record(self, result: WorkflowResult) -> None:
        """Count one finished run; its per-task figures are folded on the next read."""
        with self._lock:
            self.runs += 1
            status = result.status
            if status is _COMPLETED:
                self.successful += 1
            elif status is _CANCELLED:
                self.cancelled += 1
            else:
                self.failed += 1
            duration = result.duration
            if duration is not None:
                self.total_time += duration
                self.timed += 1
                self.durations.append(duration)
            if result.usage is not None:
                if self.usage is None:
                    self.usage = Usage()
                self.usage.add(result.usage)
            self._pending.append(result)
            if len(self._pending) >= PENDING_LIMIT:
                self._fold()

    def _fold(self) -> None:
        """Fold queued runs into the per-task figures (caller holds the lock)."""
        pending, self._pending = self._pending, []
        tasks = self.tasks
        for result in pending:
            for rec in result.tasks.values():
                st = rec.status
                if rec.reused or not (st is _COMPLETED or st is _FAILED or st is _CANCELLED):
                    continue
                stats = tasks.get(rec.name)
                if stats is None:
                    stats = tasks[rec.name] = _TaskStats()
                stats.executions += 1
                if st is _COMPLETED:
                    stats.successes += 1
                if rec.started_at is not None and rec.finished_at is not None:
                    d = rec.finished_at - rec.started_at
                    stats.total_time += d
                    stats.timed += 1
                    stats.durations.append(d)
                if rec._attempts is not None:  # a task that ran once records no attempt list
                    stats.retries += rec.retries
                    if rec.fallback_strategy is not None:
                        stats.fallbacks += 1
                if rec.usage is not None:
                    if stats.usage is None:
                        stats.usage = Usage()
                    stats.usage.add(rec.usage)
                if rec.tool_calls:
                    stats.tool_calls += len(rec.tool_calls)

    def record_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def snapshot(self, circuit: dict[str, Any] | None = None) -> WorkflowMetrics:
        with self._lock:
            self._fold()
            breakdown = {
                name: TaskMetrics(
                    executions=s.executions, successes=s.successes,
                    failures=s.executions - s.successes,
                    success_rate=s.successes / s.executions if s.executions else 0.0,
                    avg_duration=s.total_time / s.timed if s.timed else 0.0,
                    p95_duration=p95(s.durations), retries=s.retries, fallbacks=s.fallbacks,
                    tool_calls=s.tool_calls, **_usage_fields(s.usage),
                )
                for name, s in self.tasks.items()
            }
            return WorkflowMetrics(
                workflow=self.workflow, total_executions=self.runs, successful=self.successful,
                failed=self.failed, cancelled=self.cancelled,
                success_rate=self.successful / self.runs if self.runs else 0.0,
                avg_duration=self.total_time / self.timed if self.timed else 0.0,
                p95_duration=p95(self.durations), rejected=self.rejected,
                task_breakdown=breakdown, **_usage_fields(self.usage),
                circuit_state=None if circuit is None else circuit["state"], circuit=circuit,
            )


def _usage_fields(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "model_requests": usage.requests, "cost": usage.cost}


def metrics_for(workflow: Workflow) -> MetricsCollector:
    data = workflow._runtime_data
    collector: MetricsCollector | None = data.get("metrics")
    if collector is None:
        collector = data["metrics"] = MetricsCollector(workflow.name)
    return collector
