"""1,000-task sequential chain of no-op function agents: orchestration overhead per task.

Compared in the same process against the same chain written on plain anyio (the functions
called in a loop inside one event loop). Target: <= 15 µs of overhead per task.
"""

from __future__ import annotations

import statistics
import sys
import time

import anyio

from pyagent.orchestrator import ExecutionPattern, Task, Workflow

N = 1000
REPEATS = 30


def noop(x: int) -> int:
    return x


async def anoop(x: int) -> int:
    return x


def chain(fn: object) -> Workflow:
    return Workflow(name="chain", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i}", agent=fn) for i in range(N)])


async def measure() -> dict[str, float]:
    sync_wf, async_wf = chain(noop), chain(anoop)

    async def plain_sync() -> int:
        v = 0
        for _ in range(N):
            v = noop(v)
        return v

    async def plain_async() -> int:
        v = 0
        for _ in range(N):
            v = await anoop(v)
        return v

    async def best(fn: object) -> float:
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            await fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    await sync_wf.run(0)  # warm up
    out = {
        "pyagent_sync": await best(lambda: sync_wf.run(0)),
        "plain_sync": await best(plain_sync),
        "pyagent_async": await best(lambda: async_wf.run(0)),
        "plain_async": await best(plain_async),
    }
    return out


def main() -> None:
    for backend in ("asyncio", "trio"):
        r = anyio.run(measure, backend=backend)
        sync_over = (r["pyagent_sync"] - r["plain_sync"]) / N * 1e6
        async_over = (r["pyagent_async"] - r["plain_async"]) / N * 1e6
        verdict = "meets" if max(sync_over, async_over) <= 15 else "MISSES"
        print(f"chain {N} tasks [{backend}]: sync agents {sync_over:.2f} µs/task overhead "
              f"(pyagent {r['pyagent_sync'] * 1e3:.2f} ms vs plain anyio {r['plain_sync'] * 1e3:.3f} ms); "
              f"async agents {async_over:.2f} µs/task — {verdict} target <= 15 µs")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
