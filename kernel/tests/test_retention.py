"""``retention=N`` keeps storage bounded without making checkpointing quadratic.

Rewriting a full checkpoint of every completed task every N checkpoints wrote O(tasks²/N)
bytes (742 MB for a 10,000-task chain). Now a full checkpoint replaces the deltas only once
they outweigh the previous full one, so the bytes written stay linear in the number of tasks,
and pruning runs in the background without holding up the run's checkpoint writes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import pytest

from pyagent import Task, Workflow, hookimpl
from pyagent._defaults.memory_store import MemoryStore
from pyagent.model.events import Event
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import Runtime
from pyagent.testing import CountingAgents as Agents

pytestmark = pytest.mark.anyio


def step(x: dict[str, Any]) -> dict[str, Any]:
    return {"n": x["n"] + 1, "note": "a short record"}


def chain(n: int, url: str, **cp: Any) -> Workflow:
    return Workflow(name="long chain", steps=[Task(name=f"t{i:05d}", agent=step) for i in range(n)],
                    checkpointing={"storage": url, **cp})


async def written(n: int, **cp: Any) -> tuple[int, float, str, str]:
    """(bytes written, seconds, run id, store url) for an n-task chain."""
    url = f"memory://{uuid.uuid4().hex}"
    sizes: list[int] = []

    def on_event(e: Event) -> None:
        if e.kind == "checkpoint.saved":
            sizes.append(e.data["size"])

    started = time.perf_counter()
    result = await chain(n, url, **cp).run({"n": 0}, on_event=on_event)
    elapsed = time.perf_counter() - started
    assert result.ok and result.output == {"n": n, "note": "a short record"}
    return sum(sizes), elapsed, result.run_id, url


async def test_bytes_written_with_retention_grow_linearly_with_the_tasks(drt: Runtime) -> None:
    small_bytes, small_time, _, _ = await written(500, retention=10)
    large_bytes, large_time, run_id, url = await written(4000, retention=10)
    plain_bytes, _, _, _ = await written(4000)
    # Eight times the tasks: about eight times the bytes, give or take where the compactions
    # fall (the old scheme wrote ~64 times as much: quadratic).
    assert large_bytes / small_bytes < 12, (small_bytes, large_bytes)
    # At most a small constant factor over no retention: each full checkpoint weighs at most
    # about twice the deltas it replaces, so everything written is under 4x the deltas.
    assert large_bytes < 4 * plain_bytes, (large_bytes, plain_bytes)
    assert large_time < 30 * small_time + 1.0  # time too (generous: the machine is shared)
    # And storage stays bounded: the latest full checkpoint plus less than its weight of
    # deltas, plus the previous generation until the next compaction.
    kept = MemoryStore(url)._checkpoints[run_id]
    full = max(len(c.payload) for c in kept if c.kind == "full")
    assert sum(len(c.payload) for c in kept) < 4 * full
    assert len(kept) < 4000


async def test_a_run_resumes_correctly_from_compacted_and_pruned_checkpoints(drt: Runtime, store_url: str) -> None:
    agents = Agents()
    agents.failing.add("t150")
    steps = [Task(name=f"t{i}", agent=agents[f"t{i}"]) for i in range(200)]
    wf = Workflow(name="w", steps=steps, checkpointing={"storage": store_url, "retention": 3})
    first = await wf.run("x")
    assert first.status is TaskStatus.FAILED
    kinds = [c.kind for c in MemoryStore(store_url)._checkpoints[first.run_id]]
    assert kinds.count("full") >= 1 and len(kinds) < 150  # compacted and pruned
    agents.failing.clear()
    result = await wf.resume_from(first.run_id)
    assert result.ok and result.output == "x" + "".join(f">t{i}" for i in range(200))
    assert all(agents.calls[f"t{i}"] == 1 for i in range(150)) and agents.calls["t150"] == 2


class SlowPruneStore(MemoryStore):
    """A memory store whose pruning waits until the test lets it go."""

    gate: anyio.Event | None = None
    pruning: anyio.Event | None = None

    async def prune(self, run_id: str, keep: int) -> int:
        assert SlowPruneStore.gate is not None and SlowPruneStore.pruning is not None
        SlowPruneStore.pruning.set()
        await SlowPruneStore.gate.wait()
        return await super().prune(run_id, keep)


class SlowPrunePlugin:
    @hookimpl
    def pyagent_register_stores(self, register: Any) -> None:
        register("slowprune", SlowPruneStore)


async def test_pruning_does_not_hold_up_checkpoint_writes(drt: Runtime) -> None:
    drt.register(SlowPrunePlugin(), "slowprune")
    SlowPruneStore.gate, SlowPruneStore.pruning = anyio.Event(), anyio.Event()
    url = f"slowprune://{uuid.uuid4().hex}"
    n = 60
    saved: list[str] = []
    all_saved = anyio.Event()

    def on_event(e: Event) -> None:
        if e.kind == "task.completed":
            saved.append(e.task or "")
        if e.kind == "checkpoint.saved" and len(saved) == n:
            all_saved.set()

    box: dict[str, Any] = {}

    async def go() -> None:
        box["result"] = await chain(n, url, retention=2).run({"n": 0}, run_id="r1", on_event=on_event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await SlowPruneStore.pruning.wait()  # a prune started and is stuck
            await all_saved.wait()  # every task was still checkpointed meanwhile
            stored = MemoryStore(url)._checkpoints["r1"]
            assert len(stored) > 3  # nothing pruned yet
            SlowPruneStore.gate.set()
    assert box["result"].ok
    kept = MemoryStore(url)._checkpoints["r1"]
    assert len(kept) < n  # pruned once let go
