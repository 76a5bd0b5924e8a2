"""pyagent-prometheus: a Prometheus ``/metrics`` endpoint for pyagent runs.

``PrometheusMonitor(port=9090, host="127.0.0.1")`` serves the metrics of every run it sees,
through the OpenTelemetry SDK and its Prometheus exporter. Monitors on the same host and port
share one endpoint, so several orchestrators in one process are scraped together.
"""

from __future__ import annotations

from pyagent_prometheus.monitor import PrometheusMonitor

__all__ = ["PrometheusMonitor"]
