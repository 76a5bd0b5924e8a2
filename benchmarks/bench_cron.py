"""Cron fire latency on the real clock: from a tick's scheduled instant to its ``workflow.started``.

A schedule firing every second (``* * * * * *``) runs a no-op workflow while the orchestrator
serves; a monitor takes each ``workflow.started`` event's timestamp and subtracts the tick's
instant (its run id names it). Goal: median <= 20 ms. Memory store (each tick recorded before
its run starts) and SQLite.

Standalone: ``python benchmarks/bench_cron.py`` (needs pyagent-cron and pyagent-sql).
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
from pathlib import Path
from typing import Any

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow

TICKS = 12
GOAL_MS = 20.0


async def latencies(store: str) -> list[float]:
    seen: list[float] = []
    done = anyio.Event()

    def monitor(event: Any) -> None:
        if event.kind == "workflow.started":
            stamp = event.run_id.split("@", 1)[1]
            scheduled = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
            seen.append(event.timestamp - scheduled)
            if len(seen) >= TICKS:
                done.set()

    orch = Orchestrator(store=store, monitors=[monitor])
    orch.schedule(Workflow(name="tick", steps=[Task(name="t", agent=lambda x: None)]), cron="* * * * * *")
    async with orch.serving(port=None):
        with anyio.fail_after(TICKS + 30):
            await done.wait()
    return seen[:TICKS]


def main() -> int:
    print(f"cron fire latency: {TICKS} ticks of '* * * * * *', scheduled instant -> workflow.started, real clock")
    ok = True
    with tempfile.TemporaryDirectory(prefix="pyagent-bench-") as tmp:
        for name, store in (("memory store", "memory://bench-cron"), ("SQLite", f"sqlite:///{Path(tmp) / 'cron.db'}")):
            ms = sorted(x * 1e3 for x in anyio.run(latencies, store))
            median = statistics.median(ms)
            ok &= median <= GOAL_MS
            print(f"  {name:13} median {median:6.2f} ms  max {ms[-1]:6.2f} ms  min {ms[0]:6.2f} ms — "
                  f"{'meets' if median <= GOAL_MS else 'MISSES'} goal median <= {GOAL_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
