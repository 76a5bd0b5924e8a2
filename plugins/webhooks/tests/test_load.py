"""A bounded load test: 2,000 POSTs at once (one connection each), every one becomes exactly one run.

Then 500 of the idempotency keys are sent again: they answer with the runs they already have
and start nothing. The same load on SQLite is in the repository's tests/ (everything installed).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from pyagent_webhooks.loadtest import post_many

from pyagent.orchestrator import Orchestrator, Task, Workflow

pytestmark = pytest.mark.anyio

REQUESTS = 2_000
REPLAYS = 500


async def load(store: str) -> float:
    """Run the load against a server on ``store``; returns the seconds it took."""
    seen: list[int] = []
    orch = Orchestrator(store=store)
    orch.on_webhook("/load", workflow=Workflow(name="load", steps=[Task(name="T", agent=lambda b: seen.append(b["n"]) or b["n"])]),
                    max_pending=REQUESTS * 2)
    started = time.perf_counter()
    async with orch.serving(port=0) as host:
        bodies = [({"n": n}, {"Idempotency-Key": f"key-{n}"}) for n in range(REQUESTS)]
        responses = await post_many(host.urls[0], "/load", bodies, connections=REQUESTS)
        assert [r.status for r in responses].count(202) == REQUESTS
        ids = {r.json()["run_id"] for r in responses}
        assert len(ids) == REQUESTS
        with anyio.fail_after(60):
            while len(seen) < REQUESTS or host.in_flight or host.waiting:
                await anyio.sleep(0.02)
        replays = await post_many(host.urls[0], "/load", bodies[:REPLAYS], connections=REQUESTS)
        assert all(r.status == 202 and r.headers.get("idempotent-replayed") == "true" for r in replays)
        assert {r.json()["run_id"] for r in replays} <= ids
        await anyio.sleep(0.1)
        assert host.in_flight == 0 and host.waiting == 0
    elapsed = time.perf_counter() - started
    assert sorted(seen) == list(range(REQUESTS))  # every accepted request ran exactly once; none lost
    history = await orch.aget_history(workflow="load")
    assert len(history) == REQUESTS and {r.run_id for r in history} == ids
    assert all(r.status.value == "completed" for r in history)
    assert elapsed < 60, f"the load test took {elapsed:.1f}s"
    return elapsed


@pytest.mark.slow
async def test_two_thousand_concurrent_posts_give_two_thousand_runs_and_replays_start_none(
        hook_runtime: Any, store_url: str) -> None:
    await load(store_url)
