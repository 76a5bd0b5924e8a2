"""Run-queue throughput at the store: runs started per second by three replicas sharing one store.

Each replica is a process of its own with its own store object: it takes runs off the queue in
batches (``dequeue_runs``), and for each run claimed writes its header as completed (fenced by
the lease, as a run's last write is) and gives its lease back (``release_run``), up to 4 runs
side by side: a no-op run, so what is measured is the store's cost per run started and
finished from the queue. The runs are queued (``create_run``,
status ``pending``) before the replicas start; the clock runs from the moment every replica,
started, connected and warm, is told to go, to the last run released.

Goal: >= 500 runs/s on PostgreSQL with 3 replicas (unbounded workflow, batches of 16). Also
printed: single-run batches, a workflow bounded by ``max_active``, and SQLite (reported, no
goal). PostgreSQL is measured when ``PYAGENT_TEST_POSTGRES_URL`` is set, in a schema of its
own that is dropped afterwards.

Standalone: ``python benchmarks/bench_queue.py`` (needs pyagent-sql).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pyagent.durability.store import RunHeader
from pyagent.plugins import get_runtime

REPLICAS = 3
RUNS = 3000
CONCURRENT_RUNS = 4  # runs a replica finishes side by side
GOAL = 500.0
POSTGRES_ENV = "PYAGENT_TEST_POSTGRES_URL"
WORKFLOW = "bench-queue"


def store_for(url: str) -> Any:
    return get_runtime().driver("stores", url.split("://", 1)[0])(url)


async def worker(url: str, owner: str, batch: int, max_active: int | None) -> dict[str, Any]:
    """One replica: take runs until the queue stays empty, completing and releasing each."""
    store = store_for(url)
    served = {WORKFLOW: max_active}
    done = dequeues = 0

    side_by_side = asyncio.Semaphore(CONCURRENT_RUNS)

    async def finish(claim: Any) -> None:
        async with side_by_side:
            header = dataclasses.replace(claim.header, status="completed", finished_at=time.time())
            await store.save_run(header, fence=claim.lease.token)
            await store.release_run(claim.header.run_id, claim.lease.token)

    async with store:
        await store.list_runs(limit=1)  # connected and warm before the clock starts
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
        last = time.time()
        cpu = time.process_time()  # every thread of the process: the store's loop thread too
        empty = 0
        while empty < 3:
            claims = await store.dequeue_runs(owner, now=time.time(), ttl=60.0, limit=batch, workflows=served)
            dequeues += 1
            if not claims:
                empty += 1
                await asyncio.sleep(0.005)
                continue
            empty = 0
            await asyncio.gather(*(finish(claim) for claim in claims))
            done += len(claims)
            last = time.time()
        cpu = time.process_time() - cpu
    return {"done": done, "dequeues": dequeues, "last": last, "cpu": cpu}


async def enqueue(url: str, n: int) -> float:
    """Queue ``n`` runs; runs/s of ``create_run`` from one process (reported)."""
    store = store_for(url)
    async with store:
        t = time.perf_counter()
        base = time.time()
        for i in range(n):
            await store.create_run(RunHeader(f"run-{i:06}", WORKFLOW, "pending", base + i * 1e-6, None, b"{}"))
        return n / (time.perf_counter() - t)


async def check_all_done(url: str, n: int) -> None:
    store = store_for(url)
    async with store:
        completed = await store.list_runs(workflow=WORKFLOW, status="completed")
        leases = await store.list_leases()
    if len(completed) != n or leases:
        raise SystemExit(f"benchmark failed: {len(completed)} of {n} runs completed, {len(leases)} leases left")


def measure(url: str, batch: int, max_active: int | None) -> tuple[float, float, int, float]:
    """(runs/s started by the replicas, runs/s queued, dequeue calls, replicas' CPU µs per run)
    for a fresh queue at ``url``."""
    queued = asyncio.run(enqueue(url, RUNS))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, f"replica-{i}", str(batch),
                               "none" if max_active is None else str(max_active)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(REPLICAS)]
    for proc in procs:  # imported, connected and warm
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("a replica failed to start")
    start = time.time()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"a replica failed (exit {proc.returncode})")
        results.append(json.loads(out))
    if any(r["done"] == 0 for r in results):
        raise SystemExit("benchmark failed: a replica took no runs")
    asyncio.run(check_all_done(url, RUNS))
    elapsed = max(r["last"] for r in results) - start
    cpu = sum(r["cpu"] for r in results)
    return RUNS / elapsed, queued, sum(r["dequeues"] for r in results), cpu / RUNS * 1e6


def report(name: str, fresh: Callable[[], AbstractContextManager[str]], batch: int, max_active: int | None,
           goal: float | None, repeats: int = 1) -> bool:
    """Measure ``repeats`` times on fresh queues; print the median (and the range)."""
    figures = []
    for _ in range(repeats):
        with fresh() as url:
            figures.append(measure(url, batch, max_active))
    rates = sorted(f[0] for f in figures)
    rate = statistics.median(rates)
    calls, cpu = statistics.median(f[2] for f in figures), statistics.median(f[3] for f in figures)
    queued = statistics.median(f[1] for f in figures)
    spread = f" (median of {repeats}: {rates[0]:.0f}-{rates[-1]:.0f})" if repeats > 1 else ""
    bound = "unbounded" if max_active is None else f"max_active={max_active}"
    verdict = "" if goal is None else f" — {'meets' if rate >= goal else 'MISSES'} goal >= {goal:.0f} runs/s"
    print(f"  {name:10} batch {batch:2}, {bound:14} {rate:5.0f} runs/s started{spread}; {calls:.0f} dequeue "
          f"calls, replicas' CPU {cpu:.0f} µs/run; queued at {queued:.0f} runs/s{verdict}", flush=True)
    return goal is None or rate >= goal


def main() -> int:
    print(f"run queue: {RUNS} queued no-op runs, {REPLICAS} replica processes each dequeuing, completing "
          "and releasing, runs/s from the common start to the last release")
    ok = True
    pg = os.environ.get(POSTGRES_ENV)
    if not pg:
        print(f"  PostgreSQL not measured: set {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    else:
        @contextlib.contextmanager
        def schema() -> Iterator[str]:
            name = f"pyagent_bench_{uuid.uuid4().hex[:10]}"
            try:
                yield pg + ("&" if "?" in pg else "?") + f"schema={name}"
            finally:
                asyncio.run(_drop_schema(pg, name))

        ok &= report("PostgreSQL", schema, 16, None, GOAL, repeats=3)
        report("PostgreSQL", schema, 1, None, None)
        report("PostgreSQL", schema, 16, 10, None)

    @contextlib.contextmanager
    def sqlite_file() -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="pyagent-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'queue.db'}"

    report("SQLite", sqlite_file, 16, None, None)
    report("SQLite", sqlite_file, 1, None, None)
    return 0 if ok else 1


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        url, owner, batch, cap = sys.argv[2:6]
        result = asyncio.run(worker(url, owner, int(batch), None if cap == "none" else int(cap)))
        print(json.dumps(result))
        raise SystemExit(0)
    raise SystemExit(main())
