"""Helpers the seed's one-call APIs use to work from sync code and inside a running loop."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_event_loop() -> bool:
    """True when called from inside a running event loop (asyncio or trio)."""
    asyncio = sys.modules.get("asyncio")  # not imported means no asyncio loop is running
    if asyncio is not None:
        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            pass
    try:
        import sniffio

        sniffio.current_async_library()
        return True
    except Exception:
        return False


def run_or_await(fn: Callable[[], Awaitable[T]]) -> Any:
    """Return ``fn()``'s awaitable inside a running loop; from sync code, run it and return the result."""
    if in_event_loop():
        return fn()
    import anyio

    async def go() -> T:
        return await fn()

    return anyio.run(go)


def run_blocking(fn: Callable[[], Awaitable[T]], *, name: str = "pyagent") -> T:
    """Run ``fn()`` to completion from plain code and return its result, also when called from
    inside a running event loop: there it runs on a loop of its own, in a short-lived thread
    (the caller's loop is blocked meanwhile, as any plain call blocks it)."""
    import anyio

    async def go() -> T:
        return await fn()

    if not in_event_loop():
        return anyio.run(go)
    import threading

    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = anyio.run(go)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=worker, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
