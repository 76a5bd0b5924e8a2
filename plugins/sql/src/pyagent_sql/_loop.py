"""A private asyncio loop on a daemon thread, where a store's async engine lives.

SQLAlchemy's async engines (aiosqlite, asyncpg) only run on asyncio, and their pooled
connections belong to the loop that made them. pyagent runs on asyncio *and* trio, and sync
helpers start a fresh loop per call, so each store keeps its engine on one loop of its own and
callers on any backend await the result of a coroutine submitted there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


async def wait_future(future: concurrent.futures.Future[T], *, shared: bool = False) -> T:
    """Await a thread-safe future from asyncio or trio; cancelling the caller cancels the work,
    unless the future is ``shared`` by several callers (a backend starting): then only this
    caller stops waiting, and the others still get its result."""
    if future.done() and not future.cancelled() and future.exception() is None:
        return future.result()  # done already (a backend started long ago): no hop between threads
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Not asyncio (trio): park a worker thread on the future.
        try:
            return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            if not shared:
                future.cancel()
            raise
    if shared:
        return await asyncio.shield(asyncio.wrap_future(future))
    return await asyncio.wrap_future(future)


class LoopThread:
    """One asyncio event loop running forever on a daemon thread until ``stop``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Like asyncio.run: start what was queued before the stop, cancel what is still
            # running, and let it clean up, so no task is destroyed while pending.
            self.loop.run_until_complete(asyncio.sleep(0))
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` on the private loop; the future completes with its result."""
        coro = _as_coroutine(fn, *args)
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: the store was closed meanwhile
            coro.close()
            raise RuntimeError("the store was closed while this call was starting: open it again") from None

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the private loop and await its result from the caller's loop."""
        return await wait_future(self.submit(fn, *args))

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


async def _as_coroutine(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)
