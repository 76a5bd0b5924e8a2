"""The memory store's queue looks only at runs saved as pending or running, not at every run it holds.

What ``dequeue_runs`` returns is checked in test_run_queue.py; here, that the ids it looks
through stay right however a header changes, and that ended runs leave them.
"""

from __future__ import annotations

import pytest

from pyagent._defaults.memory_store import MemoryStore
from pyagent.durability.store import RunHeader

pytestmark = pytest.mark.anyio

OWNER = "me"


def header(run_id: str, status: str, at: float = 1.0) -> RunHeader:
    return RunHeader(run_id=run_id, workflow="w", status=status, started_at=at)


async def dequeue(store: MemoryStore, limit: int = 10) -> list[str]:
    claims = await store.dequeue_runs(OWNER, now=100.0, ttl=10, limit=limit, workflows={"w": None})
    return [c.header.run_id for c in claims]


async def test_ended_runs_leave_the_queue_and_are_not_looked_at_again(store_url: str) -> None:
    store = MemoryStore(store_url)
    for i in range(50):
        assert await store.create_run(header(f"done{i}", "pending", at=i))
        await store.save_run(header(f"done{i}", "completed", at=i))
    assert await store.create_run(header("todo", "pending", at=99))
    assert await dequeue(store) == ["todo"]
    assert list(store._data.runs.queued) == ["todo"]  # the 50 ended runs were dropped
    await store.save_run(header("todo", "completed", at=99))
    assert await dequeue(store) == []
    assert not store._data.runs.queued


async def test_a_header_changed_in_place_or_written_directly_is_still_seen(store_url: str) -> None:
    store = MemoryStore(store_url)
    store._runs["direct"] = header("direct", "pending", at=1)  # as tests set stores up
    store._runs.update({"updated": header("updated", "running", at=2)})
    await store.create_run(header("mutated", "pending", at=3))
    store._runs["mutated"].status = "completed"  # changed in place: ended
    assert await dequeue(store) == ["direct", "updated"]
    store._runs.clear()
    assert not store._data.runs.queued and await dequeue(store) == []


async def test_a_suspended_run_saved_pending_again_is_queued_again(store_url: str) -> None:
    store = MemoryStore(store_url)
    await store.create_run(header("r", "pending"))
    (claim,) = await store.dequeue_runs(OWNER, now=100.0, ttl=10, limit=1, workflows={"w": None})
    await store.save_run(header("r", "completed"), fence=claim.lease.token)
    assert await dequeue(store) == [] and "r" not in store._data.runs.queued
    await store.release_run("r", claim.lease.token)
    await store.save_run(header("r", "pending"))  # e.g. a run marked pending at a shutdown
    assert await dequeue(store) == ["r"]
