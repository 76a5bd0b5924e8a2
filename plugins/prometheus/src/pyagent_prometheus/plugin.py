"""Entry point: registers the ``prometheus`` monitor kind (OpenTelemetry is imported on first use)."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl
from pyagent_prometheus.monitor import PrometheusMonitor


@hookimpl
def pyagent_register_monitors(register: Any) -> None:
    register("prometheus", PrometheusMonitor)
