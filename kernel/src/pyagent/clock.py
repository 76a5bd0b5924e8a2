"""The clock the engine waits on: swapped for a manual one in tests so retries take no time."""

from __future__ import annotations

import time

import anyio


class Clock:
    """Wall time, monotonic time and sleeping, as used by retries, timeouts and circuit breakers."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
