"""The clock schedules wait on: real sleep_until, and a ManualClock that releases waiters when moved."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from pyagent.clock import Clock
from pyagent.testing import ManualClock

pytestmark = pytest.mark.anyio


async def test_the_real_clock_sleeps_until_a_wall_instant() -> None:
    clock = Clock()
    target = time.time() + 0.05
    await clock.sleep_until(target)
    assert time.time() >= target
    start = time.monotonic()
    await clock.sleep_until(time.time() - 10)  # in the past: at once
    assert time.monotonic() - start < 0.05


async def test_manual_sleep_until_waits_for_the_clock_to_be_moved() -> None:
    clock = ManualClock(start=100.0)
    woke: list[float] = []

    async def sleeper(when: float) -> None:
        await clock.sleep_until(when)
        woke.append(clock.time())

    async with anyio.create_task_group() as tg:
        for when in (130.0, 110.0, 120.0):
            tg.start_soon(sleeper, when)
        await anyio.wait_all_tasks_blocked()
        assert woke == [] and clock.waiting == [110.0, 120.0, 130.0]
        clock.advance(15)  # past 110 only
        await anyio.wait_all_tasks_blocked()
        assert woke == [115.0]
        clock.set(200.0)
    assert woke == [115.0, 200.0, 200.0] and clock.waiting == []
    await clock.sleep_until(150.0)  # already past: returns at once


async def test_run_until_stops_at_every_waiter_so_each_sees_its_own_instant() -> None:
    clock = ManualClock(start=0.0)
    seen: list[float] = []

    async def ticker() -> None:
        t = 0.0
        while True:
            t += 60.0
            await clock.sleep_until(t)
            seen.append(clock.time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await clock.run_until(3600.0)
        assert seen == [60.0 * n for n in range(1, 61)]
        await clock.run_for(30.0)
        assert len(seen) == 60 and clock.time() == 3630.0
        tg.cancel_scope.cancel()


async def test_manual_sleep_advances_the_clock_and_releases_waiters(anyio_backend: Any) -> None:
    clock = ManualClock(start=0.0)
    woke = anyio.Event()

    async def waiter() -> None:
        await clock.sleep_until(5.0)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await clock.sleep(10.0)  # a retry's backoff moves time past the waiter's instant
        with anyio.fail_after(5):
            await woke.wait()
    assert clock.sleeps == [10.0]
