"""``PrometheusMonitor``: the kernel's metric catalogue on a ``/metrics`` endpoint.

Each endpoint (host and port) has its own prometheus_client registry and OpenTelemetry meter
provider, never the global ones: several endpoints, and several orchestrators sharing one,
live in one process without duplicate-metric errors, and nothing else in the process
(another library's metrics) leaks onto the endpoint.
"""

from __future__ import annotations

import errno
import logging
import threading

from pyagent.plugin import ConfigurationError, MetricFold, bind_meter

log = logging.getLogger("pyagent.prometheus")


class Endpoint:
    """One HTTP server with its registry, meter provider and the fold every monitor on it feeds."""

    def __init__(self, host: str, port: int) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.resources import Resource
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry(auto_describe=True)
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            ours = [h for (h, p) in _endpoints if p == port]
            if exc.errno == errno.EADDRINUSE and ours:
                raise ConfigurationError(
                    f"PrometheusMonitor cannot serve on {host}:{port}: a PrometheusMonitor in this process "
                    f"already serves port {port} on {ours[0]}: give the same host to share its endpoint "
                    f"(PrometheusMonitor(port={port}, host={ours[0]!r})), or another port"
                ) from None
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"PrometheusMonitor cannot serve on {host}:{port}: the port is already in use by "
                    "another program: pick a free one, e.g. PrometheusMonitor(port=9464), or stop the "
                    "program that holds it"
                ) from None
            raise ConfigurationError(f"PrometheusMonitor cannot serve on {host}:{port}: {exc}") from exc
        self.host = host
        self.port = int(self.server.server_address[1])
        self.fold = MetricFold()
        self.reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource.create({"service.name": "pyagent"}),
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        bind_meter(self.fold, self.provider.get_meter("pyagent"), Observation)
        self.users = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.provider.shutdown()
        self.thread.join(timeout=5)


_endpoints: dict[tuple[str, int], Endpoint] = {}
_lock = threading.Lock()


def _open(host: str, port: int) -> Endpoint:
    with _lock:
        endpoint = _endpoints.get((host, port)) if port else None
        if endpoint is None:
            endpoint = Endpoint(host, port)
            _endpoints[(host, endpoint.port)] = endpoint
        endpoint.users += 1
        return endpoint


def _release(endpoint: Endpoint) -> None:
    with _lock:
        endpoint.users -= 1
        if endpoint.users > 0:
            return
        _endpoints.pop((endpoint.host, endpoint.port), None)
    endpoint.close()


class PrometheusMonitor:
    """Serves pyagent's metrics at ``http://host:port/metrics`` for Prometheus to scrape.

    The server starts when the monitor is made. Monitors made with the same host and port
    share it (and count each event once); ``port=0`` picks a free port (see ``.port``).
    ``close()`` stops the server once no monitor uses it.
    """

    def __init__(self, port: int = 9090, host: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"PrometheusMonitor port must be a whole number from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"PrometheusMonitor host must be an address such as '127.0.0.1', got {host!r}")
        self._endpoint: Endpoint | None = _open(host, port)
        self.host = host
        self.port = self._endpoint.port
        fold = self._endpoint.fold
        # The fold's own method: a run calls it directly, and reads the kinds it wants from it.
        self.on_event = fold.on_event
        self.event_kinds = fold.event_kinds

    @property
    def url(self) -> str:
        """Where Prometheus scrapes: ``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop using the endpoint; its server stops when the last monitor on it closes."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            _release(endpoint)

    def __repr__(self) -> str:
        state = "" if self._endpoint is not None else ", closed"
        return f"PrometheusMonitor(port={self.port}, host={self.host!r}{state})"
