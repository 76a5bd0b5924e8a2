"""200-task sequential chain checkpointed after every task: checkpoint overhead and storage.

The same chain runs with checkpointing off and with ``interval="after_each_task"`` in the
same process; the difference, divided by the number of tasks, is the per-task cost of
checkpointing (building and encoding the delta, the store write, the run header at start and
end, and opening and closing the store once per run). Targets on SQLite: <= 100 µs per task,
and a database under 200 KB after the run. PostgreSQL is measured too when
``PYAGENT_TEST_POSTGRES_URL`` is set (reported, no target).

Also printed, to tell the store's share from the kernel's: the bare store write
(``append_checkpoint`` of a typical delta, no kernel) and the same chain checkpointed to the
kernel's ``memory://`` store (the kernel's work with a store that costs next to nothing).

Standalone: ``python benchmarks/bench_checkpoint.py`` (needs pyagent-sequential and pyagent-sql).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pyagent.orchestrator import ExecutionPattern, Task, Workflow

N = 200
REPEATS = 15
TARGET_US = 100.0
TARGET_BYTES = 200 * 1024
POSTGRES_ENV = "PYAGENT_TEST_POSTGRES_URL"


def step(x: dict[str, Any]) -> dict[str, Any]:
    """A small, realistic output: each task returns a short record."""
    return {"n": x["n"] + 1, "note": "ok"}


def chain(storage: str | None) -> Workflow:
    checkpointing = None
    if storage is not None:
        checkpointing = {"enabled": True, "interval": "after_each_task", "storage": storage}
    return Workflow(
        name="bench-chain",
        pattern=ExecutionPattern.SEQUENTIAL,
        steps=[Task(name=f"t{i}", agent=step) for i in range(N)],
        checkpointing=checkpointing,
    )


async def median_run(workflow: Workflow, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = await workflow.run({"n": 0})
        times.append(time.perf_counter() - t)
        if not result.ok:
            raise SystemExit(f"benchmark run failed: {result.error}")
    return statistics.median(times)


async def overhead(storage: str) -> tuple[float, float, float]:
    """(µs per task of checkpointing, ms per run without, ms per run with)."""
    plain, checkpointed = chain(None), chain(storage)
    await plain.run({"n": 0})  # warm up both (imports, schema, connections)
    await checkpointed.run({"n": 0})
    # Interleave the two so drift (CPU frequency, page cache) hits both alike.
    without, with_cp = [], []
    for _ in range(3):
        without.append(await median_run(plain, REPEATS // 3))
        with_cp.append(await median_run(checkpointed, REPEATS // 3))
    off, on = statistics.median(without), statistics.median(with_cp)
    return (on - off) / N * 1e6, off * 1e3, on * 1e3


async def bare_store_write(url: str) -> float:
    """µs per ``append_checkpoint`` of a 120-byte payload, straight to the store."""
    from pyagent.plugin import Checkpoint, RunHeader
    from pyagent.plugins import get_runtime

    store = get_runtime().driver("stores", url.split("://", 1)[0])(url)
    await store.open()
    try:
        run_id = f"bare-{uuid.uuid4().hex}"
        await store.save_run(RunHeader(run_id, "bench-bare", "running", time.time()))
        payload = b"x" * 120
        for seq in range(50):  # warm up
            await store.append_checkpoint(Checkpoint(run_id, seq, "delta", payload, 0.0))
        t = time.perf_counter()
        for seq in range(50, 50 + 2000):
            await store.append_checkpoint(Checkpoint(run_id, seq, "delta", payload, 0.0))
        return (time.perf_counter() - t) / 2000 * 1e6
    finally:
        await store.close()


def file_sizes(path: Path) -> tuple[int, int]:
    """(database file, write-ahead log) in bytes."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


async def one_run_size(folder: Path) -> tuple[int, int]:
    """The database size after exactly one 200-task checkpointed run into a fresh file."""
    path = folder / "one-run.db"
    result = await chain(f"sqlite:///{path}").run({"n": 0})
    if not result.ok:
        raise SystemExit(f"benchmark run failed: {result.error}")
    return file_sizes(path)


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


async def main() -> int:
    print(f"checkpointed chain: {N} tasks, checkpoint after each task, median of {REPEATS} runs")
    with tempfile.TemporaryDirectory(prefix="pyagent-bench-") as tmp:
        folder = Path(tmp)
        sqlite_url = f"sqlite:///{folder / 'checkpoints.db'}"
        per_task, off_ms, on_ms = await overhead(sqlite_url)
        db, wal = await one_run_size(folder)
        bare = await bare_store_write(f"sqlite:///{folder / 'bare.db'}")
        print(
            f"  SQLite      {per_task:7.1f} µs/task checkpoint overhead "
            f"(run {off_ms:.2f} ms without, {on_ms:.2f} ms with) — "
            f"{verdict(per_task <= TARGET_US)} target <= {TARGET_US:.0f} µs"
        )
        print(
            f"  SQLite      database after one run: {db / 1024:.1f} KB (+ {wal / 1024:.1f} KB "
            f"write-ahead log) — {verdict(db + wal < TARGET_BYTES)} target < {TARGET_BYTES // 1024} KB"
        )
        print(f"  SQLite      bare store write (append_checkpoint, no kernel): {bare:.1f} µs")
        kernel, _, _ = await overhead(f"memory://bench-{uuid.uuid4().hex}")
        print(f"  memory://   {kernel:7.1f} µs/task: the kernel's share (building, encoding and "
              "recording each checkpoint, with a store that only keeps objects)")

    pg = os.environ.get(POSTGRES_ENV)
    if not pg:
        print(f"  PostgreSQL  not measured: set {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    else:
        schema = f"pyagent_bench_{uuid.uuid4().hex[:10]}"
        url = pg + ("&" if "?" in pg else "?") + f"schema={schema}"
        try:
            per_task, off_ms, on_ms = await overhead(url)
            bare = await bare_store_write(url)
            size = await _pg_bytes_per_run(pg, schema)
            print(
                f"  PostgreSQL  {per_task:7.1f} µs/task checkpoint overhead "
                f"(run {off_ms:.2f} ms without, {on_ms:.2f} ms with); "
                f"bare store write {bare:.1f} µs; {size / 1024:.1f} KB of rows per run (reported)"
            )
        finally:
            await _drop_schema(pg, schema)
    sys.stdout.flush()
    return 0


async def _pg_bytes_per_run(pg: str, schema: str) -> float:
    import asyncpg

    conn = await asyncpg.connect(pg.split("?", 1)[0])
    try:
        rows = await conn.fetchval(
            f'SELECT sum(pg_column_size(c.*)) / count(DISTINCT run_id) FROM "{schema}".pyagent_checkpoints c '
            "WHERE run_id NOT LIKE 'bare-%'"
        )
        return float(rows or 0)
    finally:
        await conn.close()


async def _drop_schema(pg: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
