"""10,000-task chain checkpointed after every task on SQLite, with and without ``retention``.

Retention used to rewrite a full checkpoint of every completed task every N checkpoints:
quadratic in the number of tasks (194 s and 742 MB written for this chain with
``retention=10``, against 3.1 s and 1.7 MB without). Full checkpoints now replace the deltas
only once the deltas outweigh the previous full one, so both columns should stay within a
small factor of each other. Printed per setting: the checkpoint cost per task (the run's
time minus the same chain's time without checkpointing, divided by the tasks), the payload
bytes written (from the ``checkpoint.saved`` events), the checkpoints kept and the database size.

Standalone: ``python benchmarks/bench_retention.py`` (needs pyagent-sequential and pyagent-sql).
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pyagent.orchestrator import ExecutionPattern, Task, Workflow

N = 10_000
REPEATS = 3
SETTINGS: list[int | None] = [None, 10, 100]


def step(x: dict[str, Any]) -> dict[str, Any]:
    return {"n": x["n"] + 1, "note": "ok"}


def chain(storage: str | None, retention: int | None) -> Workflow:
    checkpointing: dict[str, Any] | None = None
    if storage is not None:
        checkpointing = {"enabled": True, "interval": "after_each_task", "storage": storage}
        if retention is not None:
            checkpointing["retention"] = retention
    return Workflow(name=f"bench-retention-{retention}", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i:05d}", agent=step) for i in range(N)], checkpointing=checkpointing)


async def timed(workflow: Workflow) -> tuple[float, int, str]:
    """(seconds, payload bytes written, run id) of one run."""
    written = [0]

    def on_event(e: Any) -> None:
        if e.kind == "checkpoint.saved":
            written[0] += e.data["size"]

    t = time.perf_counter()
    result = await workflow.run({"n": 0}, on_event=on_event)
    elapsed = time.perf_counter() - t
    if not result.ok:
        raise SystemExit(f"benchmark run failed: {result.error}")
    return elapsed, written[0], result.run_id


def kept(path: Path, run_id: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        count, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM pyagent_checkpoints WHERE run_id = ?",
            (run_id,)).fetchone()
    finally:
        conn.close()
    return int(count), int(size)


async def main() -> int:
    print(f"{N:,}-task chain, checkpoint after each task, SQLite; median of {REPEATS} runs each")
    plain = chain(None, None)
    await plain.run({"n": 0})
    base = statistics.median([(await timed(plain))[0] for _ in range(REPEATS)])
    print(f"  without checkpointing            {base:6.2f} s per run")
    with tempfile.TemporaryDirectory(prefix="pyagent-bench-") as tmp:
        for retention in SETTINGS:
            path = Path(tmp) / f"retention-{retention}-{uuid.uuid4().hex[:6]}.db"
            wf = chain(f"sqlite:///{path}", retention)
            runs = [await timed(wf) for _ in range(REPEATS)]
            seconds = statistics.median(r[0] for r in runs)
            written = runs[-1][1]
            count, size = kept(path, runs[-1][2])
            label = "no retention" if retention is None else f"retention={retention}"
            print(f"  {label:<16} {(seconds - base) / N * 1e6:7.1f} µs/task checkpoint cost "
                  f"({seconds:5.2f} s per run), {written / 1e6:6.2f} MB written, "
                  f"{count:,} checkpoints kept ({size / 1e6:.2f} MB), "
                  f"database {path.stat().st_size / 1e6:.1f} MB after {REPEATS} runs")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
