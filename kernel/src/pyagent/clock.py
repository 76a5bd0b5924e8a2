"""The clock the engine waits on: swapped for a manual one in tests so retries take no time."""

from __future__ import annotations

import time

import anyio

# Real waits until an instant are taken in slices of at most this many seconds, so a wall
# clock that is stepped (NTP, a suspended laptop) is noticed within one slice.
_MAX_SLICE = 30.0


class Clock:
    """Wall time, monotonic time and sleeping, as used by retries, timeouts, breakers and schedules."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def sleep_until(self, when: float) -> None:
        """Return once wall time (``time()``, epoch seconds) has reached ``when``.

        Schedules wait with this rather than ``sleep``: a wall instant is what a cron tick
        names, and a manual clock can release every waiter whose instant it passes.
        """
        while True:
            delay = when - self.time()
            if delay <= 0:
                return
            await anyio.sleep(min(delay, _MAX_SLICE))
