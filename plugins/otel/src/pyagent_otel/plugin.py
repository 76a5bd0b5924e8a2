"""Entry point: registers the ``otel`` monitor kind (OpenTelemetry is imported on first use)."""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl
from pyagent_otel.monitor import OpenTelemetryMonitor


@hookimpl
def pyagent_register_monitors(register: Any) -> None:
    register("otel", OpenTelemetryMonitor)
