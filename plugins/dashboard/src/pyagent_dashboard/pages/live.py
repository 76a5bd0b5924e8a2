"""Live updates: a server-sent event stream that says when a page's content changed.

The page's script then fetches the page again and swaps the live region. The stream compares a
fingerprint of what the page shows, read from the store every ``poll_interval`` seconds, with
the one the page was rendered from (``?v=``), so nothing that changed in between is missed.
Each stream ends after a few minutes (the browser reconnects), so a server can always stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse

if TYPE_CHECKING:
    from pyagent_dashboard.app import Dashboard

STREAM_SECONDS = 300
KEEPALIVE_SECONDS = 15


def stream(dashboard: Dashboard, request: Request, version: Callable[[], Awaitable[str]]) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        last = request.query_params.get("v")
        yield "retry: 2000\n\n"
        started = quiet = anyio.current_time()
        while not dashboard.closing and anyio.current_time() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            try:
                now = await version()
            except Exception as exc:  # the store is down: say so, and keep trying
                now = f"error:{type(exc).__name__}"
            if last is not None and now != last:
                yield f"event: changed\ndata: {now}\n\n"
                quiet = anyio.current_time()
            last = now
            if anyio.current_time() - quiet > KEEPALIVE_SECONDS:
                yield ": still here\n\n"
                quiet = anyio.current_time()
            await anyio.sleep(dashboard.poll_interval)

    headers: dict[str, Any] = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
