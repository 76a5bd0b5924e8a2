from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pyagent.testing_fixtures import *  # noqa: F403


class OtlpReceiver:
    """A loopback OTLP/HTTP receiver: decodes the protobuf export requests it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.paths: list[str] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                with receiver.arrived:
                    receiver.paths.append(self.path)
                    if self.path.endswith("/v1/traces"):
                        request = ExportTraceServiceRequest.FromString(raw)
                        for rs in request.resource_spans:
                            for ss in rs.scope_spans:
                                receiver.spans.extend(ss.spans)
                    elif self.path.endswith("/v1/metrics"):
                        request = ExportMetricsServiceRequest.FromString(raw)
                        for rm in request.resource_metrics:
                            for sm in rm.scope_metrics:
                                receiver.metrics.extend(sm.metrics)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_spans(self, count: int, timeout: float = 20.0) -> list[Any]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def traced() -> Any:
    """A tracer provider exporting to memory, and the exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter
