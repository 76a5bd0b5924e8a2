"""A small HTTP/1.1 load client: many POSTs over a few keep-alive connections, with latencies.

For load-testing a webhook (ours use it, and ``benchmarks/``): general clients spend more
time queueing on their own connection pool than the server spends answering once thousands
of requests are in flight. Plain HTTP over TCP only, on asyncio or trio (anyio streams).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio


@dataclass
class Reply:
    """One response: status, headers (lower-case names), body, and the seconds it took."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    latency: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


async def _read_reply(stream: Any, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        body += await stream.receive()
    buffer[:] = body[length:]
    return status, headers, bytes(body[:length])


async def post_many(url: str, path: str, requests: list[tuple[Any, dict[str, str]]], *,
                    connections: int = 100) -> list[Reply]:
    """POST each ``(json_body, headers)`` to ``url + path``, ``connections`` at a time; replies in order."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    replies: list[Reply | None] = [None] * len(requests)
    todo = iter(range(len(requests)))

    async def worker() -> None:
        stream = None
        buffer = bytearray()
        try:
            for i in todo:
                body, headers = requests[i]
                data = json.dumps(body).encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(data)}\r\n{extra}\r\n").encode() + data
                started = time.perf_counter()
                if stream is None:
                    stream = await anyio.connect_tcp(host, port)
                    buffer.clear()
                await stream.send(request)
                status, got, payload = await _read_reply(stream, buffer)
                replies[i] = Reply(status, got, payload, time.perf_counter() - started)
                if got.get("connection", "").lower() == "close":
                    await stream.aclose()
                    stream = None
        finally:
            if stream is not None:
                await stream.aclose()

    async with anyio.create_task_group() as tg:
        for _ in range(min(connections, len(requests)) or 1):
            tg.start_soon(worker)
    assert all(r is not None for r in replies)
    return [r for r in replies if r is not None]
