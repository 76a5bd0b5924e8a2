"""Waking the caller's event loop from the Dask client's loop thread, without blocking either.

The Dask client runs on its own thread and event loop, so one client (and one local cluster)
serves runs on any event loop: asyncio or trio, one ``anyio.run`` after another. Its results
come back through a callback on that thread; this hands them to the caller's loop with the
loop's own thread-safe scheduling call (``call_soon_threadsafe`` / ``run_sync_soon``). Neither
blocks, so neither loop can ever wait on the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import sniffio

Schedule = Callable[[Callable[[], Any]], Any]


def loop_scheduler() -> Schedule:
    """A thread-safe, non-blocking way to run a callback on the current event loop."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop().call_soon_threadsafe
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    raise RuntimeError(f"the dask executor runs on asyncio or trio, not {library}")


def notify(schedule: Schedule, callback: Callable[[], Any]) -> None:
    """Run ``callback`` on the loop behind ``schedule``; a loop that has closed is ignored."""
    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to wake
        schedule(callback)
