from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pyagent.testing_fixtures import *  # noqa: F403


class FakeSlack:
    """A loopback HTTP server that records what slack-sdk sends and answers as told.

    ``answers`` is a list of (status, headers, body) used one per request, then 200 ok.
    ``hold`` (a threading.Event) makes requests wait until it is set.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str], str]] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw}
                if fake.hold is not None:
                    fake.hold.wait(10)
                with fake.arrived:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    answer = fake.answers.pop(0) if fake.answers else None
                    fake.arrived.notify_all()
                status, headers, text = answer or (200, {}, "ok" if "/hooks/" in self.path else '{"ok": true}')
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    try:
        yield server
    finally:
        server.close()
