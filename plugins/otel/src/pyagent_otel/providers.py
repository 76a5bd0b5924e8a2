"""Which tracer and meter provider a monitor uses when none is given.

Nothing is exported unless the user asked for it: the application's own global providers
when it configured OpenTelemetry, else providers built from the standard ``OTEL_*``
environment variables (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ...), else none at all (the monitor then builds no span).
"""

from __future__ import annotations

import os
from typing import Any

from pyagent.plugin import ConfigurationError

_INSTALL = "pip install 'pyagent-otel[otlp]' (or, from a clone: pip install './plugins/otel[otlp]')"


def tracer_provider() -> tuple[Any | None, bool]:
    """(provider or None, whether this call created it)."""
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if _configured(current):
        return current, False
    names = _exporters("traces")
    if not names:
        return None, False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create())
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_load("traces", name)()))
    # Global as well: the agents' own instrumented HTTP and database calls then export too.
    trace.set_tracer_provider(provider)
    return provider, True


def meter_provider() -> tuple[Any | None, bool]:
    """(provider or None, whether this call created it)."""
    from opentelemetry import metrics

    current = metrics.get_meter_provider()
    if _configured(current):
        return current, False
    names = _exporters("metrics")
    if not names:
        return None, False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers = []
    for name in names:
        exporter = _load("metrics", name)()
        readers.append(exporter if isinstance(exporter, MetricReader)
                       else PeriodicExportingMetricReader(exporter))
    provider = MeterProvider(metric_readers=readers, resource=Resource.create())
    metrics.set_meter_provider(provider)
    return provider, True


def _configured(provider: Any) -> bool:
    """True when the application installed a real provider (not the API's proxy or no-op)."""
    kind = type(provider).__name__
    return not (kind.startswith("_Proxy") or kind.startswith("Proxy") or kind.startswith("NoOp"))


def _exporters(signal: str) -> list[str]:
    chosen = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    endpoint = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if chosen is None:
        return ["otlp"] if endpoint else []
    return [n.strip() for n in chosen.split(",") if n.strip() and n.strip().lower() != "none"]


def _load(signal: str, name: str) -> Any:
    """The exporter class published under OpenTelemetry's entry points for ``name``."""
    from importlib.metadata import entry_points

    if name == "otlp":
        protocol = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    group = f"opentelemetry_{signal}_exporter"
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        have = ", ".join(sorted({ep.name for ep in entry_points(group=group)})) or "none"
        hint = _INSTALL if name == "otlp_proto_http" else "install the package that provides it"
        raise ConfigurationError(
            f"OTEL_{signal.upper()}_EXPORTER asks for the '{name}' exporter, which is not installed: "
            f"{hint} (installed {signal} exporters: {have})"
        )
    return found[0].load()
