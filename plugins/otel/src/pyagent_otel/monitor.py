"""``OpenTelemetryMonitor``: traces and metrics for pyagent runs through OpenTelemetry providers."""

from __future__ import annotations

import logging
from typing import Any

from pyagent.plugin import MetricFold, bind_meter

log = logging.getLogger("pyagent.otel")


class OpenTelemetryMonitor:
    """Spans for runs, agent attempts, tools and team rounds, and pyagent's metrics.

    ``tracer_provider`` and ``meter_provider`` default to the application's global ones when
    it configured OpenTelemetry, else to providers built from the ``OTEL_*`` environment
    variables; with neither, that signal is off and nothing is exported (or even built).
    ``close()`` flushes what is pending. Providers built from ``OTEL_*`` are installed as the
    process's global ones (the agents' own instrumentation exports through them too, and the
    API sets them once per process), so closing a monitor flushes them and leaves them running
    for the next monitor; OpenTelemetry shuts them down at exit.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from pyagent_otel import providers

        if tracer_provider is None:
            tracer_provider, _ = providers.tracer_provider()
        if meter_provider is None:
            meter_provider, _ = providers.meter_provider()
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        handlers: dict[str, Any] = {}
        kinds: set[str] = set()
        if tracer_provider is not None:
            from pyagent_otel.spans import SpanBuilder

            self.spans: Any = SpanBuilder(tracer_provider.get_tracer("pyagent"))
            handlers = self.spans.handlers
            kinds |= set(handlers)
        else:
            self.spans = None
        self.metrics: MetricFold | None = None
        if meter_provider is not None:
            from opentelemetry.metrics import Observation

            self.metrics = MetricFold()
            bind_meter(self.metrics, meter_provider.get_meter("pyagent"), Observation)
            kinds |= self.metrics.event_kinds
        self._handlers = handlers
        self._fold = None if self.metrics is None else self.metrics.on_event
        self.event_kinds = frozenset(kinds)

    def on_event(self, event: Any) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)
        fold = self._fold
        if fold is not None:
            fold(event)

    def close(self) -> None:
        """Export what is pending (the providers themselves stay up: see the class docstring)."""
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                try:
                    flush()
                except Exception as exc:
                    log.warning("OpenTelemetry provider %r failed to flush: %s", provider, exc)

    def __repr__(self) -> str:
        return (f"OpenTelemetryMonitor(tracing={'on' if self.spans is not None else 'off'}, "
                f"metrics={'on' if self.metrics is not None else 'off'})")
