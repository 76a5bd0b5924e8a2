"""Several ``pyagent serve`` replicas sharing one SQL store (SQLite file, PostgreSQL schema).

Real processes: the test records pending runs in the store (as a trigger of any replica does)
and the replicas take them off the queue. The served file's agents append
``task:run-input:pid`` to a file, so "no run executed twice" and "no completed task re-run" are
counted; a gate file holds the long task until the test opens it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serving import Served, wait_for

pytest.importorskip("pyagent_sql")

pytestmark = pytest.mark.slow

LEASE = 2.0  # seconds: how long a SIGKILLed replica's run waits before another takes it

APP = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    import anyio

    from pyagent.orchestrator import Orchestrator, Task, Workflow

    CALLS = Path(os.environ["CALLS"])
    GATE = Path(os.environ["GATE"])
    CHECKPOINTS = {"storage": os.environ["STORE"], "lease_seconds": float(os.environ["LEASE"])}


    def note(task, x):
        with CALLS.open("a") as f:  # O_APPEND: one line per write, whole, from any process
            f.write(f"{task}:{x['n']}:{os.getpid()}:{time.time():.4f}\\n")


    def step(task, delay=0.0, gated=False):
        async def agent(x):
            note(task + "-start", x)
            if gated:
                while not GATE.exists():
                    await anyio.sleep(0.02)
            await anyio.sleep(delay)
            note(task, x)
            return x
        return agent


    job = Workflow(name="job", steps=[Task(name="a", agent=step("a")), Task(name="b", agent=step("b", 0.1)),
                                      Task(name="c", agent=step("c"))], checkpointing=CHECKPOINTS)
    long = Workflow(name="long", steps=[Task(name="first", agent=step("first")),
                                        Task(name="slow", agent=step("slow", gated=True)),
                                        Task(name="last", agent=step("last"))], checkpointing=CHECKPOINTS)
    limited = Workflow(name="limited", steps=[Task(name="work", agent=step("work", 0.3))],
                       checkpointing=CHECKPOINTS, max_active_runs=2)

    orchestrator = Orchestrator()
    for wf in (job, long, limited):
        orchestrator.add_workflow(wf)
''')

READY = re.compile(r"taken off its queue")


@pytest.fixture
def replicas(tmp_path: Path, store_url: str,
             serve_process: Callable[..., Served]) -> Callable[..., list[Served]]:
    async def is_queue(store: Any) -> bool:
        from pyagent.durability.store import supports_queue

        return supports_queue(store)

    if not store_call(store_url, is_queue):  # pyagent-sql before its schema version 4
        pytest.skip("the installed pyagent-sql store is not a run queue yet "
                    "(no dequeue_runs): install pyagent-sql with the run queue")
    (tmp_path / "app.py").write_text(APP)
    env = {"CALLS": str(tmp_path / "calls.txt"), "GATE": str(tmp_path / "gate"), "STORE": store_url,
           "LEASE": str(LEASE)}

    def start(n: int, concurrency: int = 4) -> list[Served]:
        """``n`` replicas on the shared store, each ready (taking runs off its queue)."""
        return [serve_process(str(tmp_path / "app.py"), "--port", "0", "--storage", store_url, "--grace", "0",
                              "--concurrency", str(concurrency), "--poll-interval", "0.1",
                              cwd=tmp_path, env={**os.environ, **env}, ready_line=READY) for _ in range(n)]

    return start


def calls(tmp_path: Path) -> list[tuple[str, str, int, float]]:
    path = tmp_path / "calls.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        task, n, pid, at = line.split(":")
        out.append((task, n, int(pid), float(at)))
    return out


def store_call(url: str, fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        from pyagent.plugin import close_store, open_store

        store = await open_store(url)
        try:
            return await fn(store)
        finally:
            await close_store(store)

    return asyncio.run(go())


def enqueue(url: str, workflow: str, tasks: int, count: int) -> list[str]:
    """Record ``count`` pending runs, as a trigger would (inputs {"n": i})."""
    from pyagent.orchestrator import Task, Workflow
    from pyagent.serving import records

    wf = Workflow(name=workflow, steps=[Task(name=f"t{i}", agent=lambda x: x) for i in range(tasks)])
    run_ids = [f"{workflow}-{i:03}" for i in range(count)]

    async def record(store: Any) -> None:
        for i, run_id in enumerate(run_ids):
            assert await store.create_run(records.pending_header(wf, run_id, {"n": i}, trigger="test", source="t"))

    store_call(url, record)
    return run_ids


def statuses(url: str, run_ids: list[str]) -> dict[str, str]:
    async def read(store: Any) -> dict[str, str]:
        return {h.run_id: h.status for h in await store.list_runs() if h.run_id in run_ids}

    result: dict[str, str] = store_call(url, read)
    return result


def test_replicas_drain_queued_runs_and_execute_each_once(replicas: Any, store_url: str, tmp_path: Path) -> None:
    started = replicas(3, concurrency=3)
    run_ids = enqueue(store_url, "job", 3, 24)
    wait_for(lambda: set(statuses(store_url, run_ids).values()) == {"completed"}, "every run to complete",
             timeout=60, every=0.1)  # each look opens the store: not too often
    done = Counter((task, n) for task, n, _, _ in calls(tmp_path) if not task.endswith("-start"))
    assert done == Counter({(task, str(i)): 1 for i in range(24) for task in "abc"})  # each task of each run once
    pids = {pid for _, _, pid, _ in calls(tmp_path)}
    assert len(pids) >= 2, "the work was not shared between replicas"
    assert {p.proc.pid for p in started} >= pids


def test_a_sigkilled_replicas_run_is_resumed_by_another_after_its_lease_expires(
        replicas: Any, store_url: str, tmp_path: Path) -> None:
    started = replicas(2)
    [run_id] = enqueue(store_url, "long", 3, 1)
    holder_pid = wait_for(lambda: next((pid for task, _, pid, _ in calls(tmp_path) if task == "slow-start"), None),
                          "the slow task to start", timeout=60, every=0.1)
    [holder] = [r for r in started if r.proc.pid == holder_pid]
    [other] = [r for r in started if r is not holder]
    holder.proc.send_signal(signal.SIGKILL)
    assert holder.proc.wait(30) == -signal.SIGKILL
    killed_at = time.time()
    (tmp_path / "gate").touch()
    wait_for(lambda: statuses(store_url, [run_id]).get(run_id) == "completed", "the run to be resumed",
             timeout=60, every=0.1)
    seen = [(task, pid, at) for task, _, pid, at in calls(tmp_path)]
    assert [t for t, _, _ in seen] == ["first-start", "first", "slow-start", "slow-start", "slow", "last-start", "last"]
    resumed = [(pid, at) for t, pid, at in seen if t == "slow-start"][1]
    assert resumed[0] == other.proc.pid
    assert resumed[1] >= killed_at + LEASE * 0.5, "taken over before the dead replica's lease could expire"
    assert f"claimed run {run_id}" in other.output and "(running)" in other.output


def test_max_active_runs_holds_across_replicas(replicas: Any, store_url: str, tmp_path: Path) -> None:
    replicas(3, concurrency=3)
    run_ids = enqueue(store_url, "limited", 1, 8)
    samples: list[int] = []

    async def sample(store: Any) -> bool:
        while True:
            now = time.time()
            samples.append(sum(1 for lease in await store.list_leases()
                               if lease.run_id in run_ids and lease.expires_at > now))
            headers = {h.run_id: h.status for h in await store.list_runs(workflow="limited")}
            if all(headers.get(r) == "completed" for r in run_ids):
                return True
            await asyncio.sleep(0.01)

    store_call(store_url, lambda store: asyncio.wait_for(sample(store), 60))
    assert max(samples) == 2
    # and from the agents' own notes: never more than two runs' work at once
    events = sorted((at, +1 if task == "work-start" else -1) for task, _, _, at in calls(tmp_path))
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak <= 2 and sum(1 for _, d in events if d > 0) == 8
