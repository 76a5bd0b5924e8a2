"""A bound on requests in flight to one model, shared by every event loop in the process.

anyio's ``CapacityLimiter`` belongs to one event loop, but one process may run several: the
synchronous one-call helpers (``team.route(...)``, ``AgentPatterns.consensus(...)``) called from
the threads of a web server each run their own. A rate limit is the server's, per key, not per
loop, so the slots are counted under a thread lock and a waiting request is woken on its own
loop (``call_soon_threadsafe`` on asyncio, the trio token's ``run_sync_soon`` on trio).
Waiters are served first come, first served. No maintained library does this across loops
and backends, hence this small class.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class _Waiter:
    __slots__ = ("event", "granted", "thread", "wake")

    def __init__(self, event: Any, wake: Any) -> None:
        self.event = event
        self.wake = wake
        self.thread = threading.get_ident()
        self.granted = False


def _waker(event: Any) -> Any:
    """A function that sets ``event`` on its own loop, callable from any thread."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        return lambda: token.run_sync_soon(event.set)
    import asyncio

    loop = asyncio.get_running_loop()
    return lambda: loop.call_soon_threadsafe(event.set)


class SharedLimit:
    """At most ``total`` holders at once, across threads and event loops (asyncio and trio)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    async def acquire(self) -> None:
        import anyio

        with self._lock:
            if self.in_use < self.total and not self._waiters:
                self.in_use += 1
                return
            event = anyio.Event()
            waiter = _Waiter(event, _waker(event))
            self._waiters.append(waiter)
        try:
            await event.wait()
        except BaseException:
            with self._lock:
                if not waiter.granted:
                    self._waiters.remove(waiter)
                    raise
            self.release()  # the slot came as this waiter was cancelled: hand it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True  # the slot passes to it; in_use stays the same
                try:
                    if waiter.thread == threading.get_ident():
                        waiter.event.set()  # released on the waiter's own loop: no need to go round it
                    else:
                        waiter.wake()
                except RuntimeError:  # its event loop is closed: it waits no more
                    continue
                return
            self.in_use -= 1
