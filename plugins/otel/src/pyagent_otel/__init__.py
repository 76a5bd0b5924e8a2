"""pyagent-otel: OpenTelemetry traces and metrics for pyagent runs.

``OpenTelemetryMonitor(tracer_provider=None, meter_provider=None)`` turns events into spans
that follow the OpenTelemetry GenAI semantic conventions for agents (``invoke_workflow``,
``invoke_agent``, ``execute_tool``) and publishes the same metrics as pyagent-prometheus
through a meter provider. Nothing is exported unless an exporter is configured.
"""

from __future__ import annotations

from pyagent_otel.monitor import OpenTelemetryMonitor

__all__ = ["OpenTelemetryMonitor"]
