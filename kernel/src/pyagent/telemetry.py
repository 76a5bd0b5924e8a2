"""The metrics that metrics monitors export (Prometheus, OpenTelemetry), folded from events.

One catalogue, so that every backend shows the same names and labels. Labels are workflow,
task, status, agent, model and token kind: never a run id or an input, which would make a new
series per run.

OpenTelemetry's synchronous instruments cost about 5 µs per call in Python, more than the
orchestration of a whole task. So :class:`MetricFold` folds events into plain counters under
one lock (well under a microsecond per event) and the monitors publish them through
observable instruments, read when a backend collects. Durations are queued and recorded into
the histograms at collection, or on the event loop once :data:`MAX_PENDING` are queued, so
memory stays bounded when nobody collects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyagent.model import events as ev
from pyagent.model.events import Event

# Histogram buckets in seconds: 5 ms to 1 h.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                              60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MAX_PENDING = 50_000
CIRCUIT_STATES = {"closed": 0, "open": 1, "half_open": 2}


@dataclass(frozen=True)
class MetricInfo:
    """One metric: its instrument name (Prometheus adds ``_total`` to counters and the unit
    to histograms), kind (counter, updown, gauge, histogram), unit, help text and labels."""

    name: str
    kind: str
    description: str
    labels: tuple[str, ...]
    unit: str = ""

    @property
    def prometheus_name(self) -> str:
        if self.kind == "counter":
            return f"{self.name}_total"
        if self.unit == "s":
            return f"{self.name}_seconds"
        return self.name


CATALOGUE: tuple[MetricInfo, ...] = (
    MetricInfo("pyagent_runs", "counter", "Workflow runs that ended, by status", ("workflow", "status")),
    MetricInfo("pyagent_run_duration", "histogram", "Duration of workflow runs", ("workflow",), "s"),
    MetricInfo("pyagent_runs_in_progress", "updown", "Workflow runs in progress", ("workflow",)),
    MetricInfo("pyagent_tasks", "counter", "Tasks that ended, by status", ("workflow", "task", "status")),
    MetricInfo("pyagent_task_duration", "histogram", "Duration of tasks, retries and fallback included",
               ("workflow", "task"), "s"),
    MetricInfo("pyagent_task_retries", "counter", "Task attempts that failed and were retried",
               ("workflow", "task")),
    MetricInfo("pyagent_fallbacks", "counter", "Tasks handed to their fallback agent", ("workflow", "task")),
    MetricInfo("pyagent_handoffs", "counter", "Handoffs between agents", ("from_agent", "to_agent")),
    MetricInfo("pyagent_circuit_state", "gauge", "Circuit breaker state: 0 closed, 1 open, 2 half-open",
               ("workflow",)),
    MetricInfo("pyagent_llm_tokens", "counter", "Language-model tokens used, by model and kind (input, output)",
               ("model", "kind")),
)
BY_NAME = {m.name: m for m in CATALOGUE}

_TASK_ENDS = {ev.TASK_COMPLETED: "completed", ev.TASK_FAILED: "failed", ev.TASK_SKIPPED: "skipped",
              ev.TASK_CANCELLED: "cancelled", ev.TASK_REUSED: "reused"}
_RUN_ENDS = {ev.WORKFLOW_COMPLETED: "completed", ev.WORKFLOW_FAILED: "failed",
             ev.WORKFLOW_CANCELLED: "cancelled"}


class MetricFold:
    """Events folded into the catalogue's values; a monitor's ``on_event`` is :meth:`on_event`.

    Several monitors may share one fold (orchestrators reporting to one endpoint): the same
    event delivered to two of them is counted once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, dict[tuple[str, ...], float]] = {
            m.name: {} for m in CATALOGUE if m.kind != "histogram"}
        self._pending: list[tuple[str, tuple[str, ...], float]] = []
        self._running: dict[str, str] = {}  # run id -> workflow, for runs_in_progress
        self._last: Event | None = None
        self.recorders: dict[str, Any] = {}  # histogram name -> instrument with record(value, attributes)
        self._handlers: dict[str, Callable[[Event], None]] = {
            ev.WORKFLOW_STARTED: self._run_started,
            **dict.fromkeys(_RUN_ENDS, self._run_ended),
            ev.WORKFLOW_SUSPENDED: self._run_suspended,
            **dict.fromkeys(_TASK_ENDS, self._task_ended),
            ev.TASK_RETRYING: self._retried,
            ev.TASK_FALLBACK: self._fell_back,
            ev.HANDOFF: self._handoff,
            ev.CIRCUIT_CHANGED: self._circuit,
            ev.MODEL_USAGE: self._usage,
        }
        self.event_kinds = frozenset(self._handlers)

    def on_event(self, event: Event) -> None:
        if event is self._last:
            return
        self._last = event
        handler = self._handlers.get(event.kind)
        if handler is None:
            return
        with self._lock:
            handler(event)
        if len(self._pending) >= MAX_PENDING:
            self.flush()

    # -- folding (under the lock) ----------------------------------------------------------

    def _add(self, metric: str, key: tuple[str, ...], amount: float = 1) -> None:
        table = self.values[metric]
        table[key] = table.get(key, 0) + amount

    def _run_started(self, e: Event) -> None:
        if e.run_id in self._running:  # a run continued while it was still counted here
            return
        self._running[e.run_id] = e.workflow
        self._add("pyagent_runs_in_progress", (e.workflow,))

    def _run_suspended(self, e: Event) -> None:
        # It waits for people, no longer in progress here; it has not ended (not in pyagent_runs).
        if self._running.pop(e.run_id, None) is not None:
            self._add("pyagent_runs_in_progress", (e.workflow,), -1)

    def _run_ended(self, e: Event) -> None:
        if self._running.pop(e.run_id, None) is not None:
            self._add("pyagent_runs_in_progress", (e.workflow,), -1)
        self._add("pyagent_runs", (e.workflow, _RUN_ENDS[e.kind]))
        duration = e.data.get("duration")
        if duration is not None:
            self._pending.append(("pyagent_run_duration", (e.workflow,), duration))

    def _task_ended(self, e: Event) -> None:
        key = (e.workflow, e.task or "")
        table = self.values["pyagent_tasks"]
        full = (*key, _TASK_ENDS[e.kind])
        table[full] = table.get(full, 0) + 1
        duration = e.data.get("duration")
        if duration is not None and e.kind != ev.TASK_REUSED:
            self._pending.append(("pyagent_task_duration", key, duration))

    def _retried(self, e: Event) -> None:
        self._add("pyagent_task_retries", (e.workflow, e.task or ""))

    def _fell_back(self, e: Event) -> None:
        self._add("pyagent_fallbacks", (e.workflow, e.task or ""))

    def _handoff(self, e: Event) -> None:
        self._add("pyagent_handoffs", (str(e.data.get("from_agent")), str(e.data.get("to_agent"))))

    def _circuit(self, e: Event) -> None:
        state = CIRCUIT_STATES.get(str(e.data.get("to")))
        if state is not None:
            self.values["pyagent_circuit_state"][(e.workflow,)] = state

    def _usage(self, e: Event) -> None:
        model = str(e.data.get("model") or "unknown")
        for kind in ("input", "output"):
            tokens = e.data.get(f"{kind}_tokens")
            if tokens:
                self._add("pyagent_llm_tokens", (model, kind), tokens)

    # -- reading (at collection) -----------------------------------------------------------

    def snapshot(self, metric: str) -> list[tuple[dict[str, str], float]]:
        """A metric's current values with their labels, for an observable instrument's callback."""
        self.flush()
        labels = BY_NAME[metric].labels
        with self._lock:
            items = list(self.values[metric].items())
        return [(dict(zip(labels, key, strict=True)), value) for key, value in items]

    def flush(self) -> None:
        """Record the queued durations into the histogram instruments (when there are any)."""
        if not self._pending or not self.recorders:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        recorders = self.recorders
        for metric, key, value in pending:
            recorder = recorders.get(metric)
            if recorder is not None:
                recorder.record(value, dict(zip(BY_NAME[metric].labels, key, strict=True)))


def bind_meter(fold: MetricFold, meter: Any, observation: Callable[..., Any]) -> None:
    """Create the catalogue's instruments on an OpenTelemetry ``meter``, reading from ``fold``.

    ``observation`` is ``opentelemetry.metrics.Observation`` (the kernel does not depend on
    OpenTelemetry; the plugins that call this do).
    """
    def reader(metric: str) -> Callable[[Any], list[Any]]:
        def observe(options: Any) -> list[Any]:
            return [observation(value, labels) for labels, value in fold.snapshot(metric)]
        return observe

    for info in CATALOGUE:
        if info.kind == "histogram":
            fold.recorders[info.name] = meter.create_histogram(
                info.name, unit=info.unit, description=info.description,
                explicit_bucket_boundaries_advisory=list(BUCKETS))
        elif info.kind == "counter":
            meter.create_observable_counter(info.name, callbacks=[reader(info.name)],
                                            unit=info.unit, description=info.description)
        elif info.kind == "updown":
            meter.create_observable_up_down_counter(info.name, callbacks=[reader(info.name)],
                                                    unit=info.unit, description=info.description)
        else:
            meter.create_observable_gauge(info.name, callbacks=[reader(info.name)],
                                          unit=info.unit, description=info.description)
