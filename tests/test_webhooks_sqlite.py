"""Webhooks under load on SQLite: every accepted request is recorded before 202 and runs once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from pyagent_webhooks.loadtest import post_many

from pyagent.orchestrator import Orchestrator, Task, Workflow

REQUESTS = 2_000
REPLAYS = 500
CONNECTIONS = REQUESTS  # one connection per request: 2,000 really at once


@pytest.mark.slow
def test_two_thousand_concurrent_posts_are_two_thousand_recorded_runs(runtime: Any, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    seen: list[int] = []
    orch = Orchestrator(store=f"sqlite:///{db}")
    orch.on_webhook("/load", workflow=Workflow(name="load", steps=[Task(name="T", agent=lambda b: seen.append(b["n"]))]),
                    max_pending=REQUESTS * 2)
    accepted_recorded: list[int] = []

    async def go() -> float:
        started = time.perf_counter()
        async with orch.serving(port=0) as host:
            bodies = [({"n": n}, {"Idempotency-Key": f"k{n}"}) for n in range(REQUESTS)]
            replies = await post_many(host.urls[0], "/load", bodies, connections=CONNECTIONS)
            assert [r.status for r in replies].count(202) == REQUESTS
            conn = sqlite3.connect(db)  # what the database holds right after the last 202
            accepted_recorded.append(conn.execute("SELECT count(*) FROM pyagent_runs").fetchone()[0])
            conn.close()
            with anyio.fail_after(120):
                while len(seen) < REQUESTS or host.in_flight or host.waiting:
                    await anyio.sleep(0.05)
            again = await post_many(host.urls[0], "/load", bodies[:REPLAYS], connections=CONNECTIONS)
            assert all(r.status == 202 and r.headers.get("idempotent-replayed") == "true" for r in again)
            assert [r.json()["run_id"] for r in again] == [r.json()["run_id"] for r in replies[:REPLAYS]]
        return time.perf_counter() - started

    elapsed = anyio.run(go)
    assert accepted_recorded == [REQUESTS]  # recorded before each 202 was sent: none can be lost
    assert sorted(seen) == list(range(REQUESTS))
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT status, count(*) FROM pyagent_runs GROUP BY status").fetchall()
    conn.close()
    assert rows == [("completed", REQUESTS)]
    assert elapsed < 120, f"took {elapsed:.1f}s"
