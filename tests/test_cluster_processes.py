"""Exactly once across replicas: three real ``pyagent serve`` processes on one store.

Three processes serve the same file on PostgreSQL (a schema of its own) and on one SQLite
file: one cron schedule that ticks every second, and a webhook. Every execution of a task
appends ``<kind> <run id> <pid>`` to a file, so "fired once" is counted from what ran, not
only from what the store recorded. For every second while all three replicas were up, the
tick's run must be recorded once, completed, and have run exactly once; an idempotency key
POSTed to the three replicas at the same moment must start one run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import os
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from serving import Served

pytestmark = pytest.mark.slow

#: How long the three replicas serve the schedule together.
WINDOW = 30.0
REPLICAS = 3

APP = textwrap.dedent('''
    import os

    from pyagent.orchestrator import Orchestrator, Task, Workflow
    from pyagent.plugin import current_run

    CALLS = os.environ["CALLS"]


    def note(kind):
        def agent(x):
            line = f"{kind} {current_run().run_id} {os.getpid()}\\n"
            fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, line.encode())  # one short O_APPEND write: never interleaved
            finally:
                os.close(fd)
            return kind
        return agent


    tick = Workflow(name="tick", steps=[Task(name="count", agent=note("tick")), Task(name="done", agent=lambda x: x)])
    job = Workflow(name="job", steps=[Task(name="count", agent=note("job")), Task(name="done", agent=lambda x: x)])

    orchestrator = Orchestrator()
    orchestrator.schedule(tick, cron="* * * * * *", name="tick")  # every second (seconds field)
    orchestrator.on_webhook("/jobs", workflow=job)
''')

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def cluster(tmp_path: Path, store_url: str, serve_process: Callable[..., Served]) -> list[Served]:
    """Three replicas of one app on one store, started together and stopped by the test
    (or at the end by ``serve_process``)."""
    (tmp_path / "app.py").write_text(APP)
    env = {"CALLS": str(tmp_path / "calls.txt")}
    replicas = [serve_process(str(tmp_path / "app.py"), "--host", "127.0.0.1", "--port", "0", "--storage", store_url,
                              "--grace", "5", cwd=tmp_path, env={**os.environ, **env}, wait=None)
                for _ in range(REPLICAS)]
    for r in replicas:
        r.wait_ready(90)
    return replicas


def executions(tmp_path: Path, kind: str) -> collections.Counter[str]:
    """How many times a task of ``kind`` ran, per run id."""
    path = tmp_path / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return collections.Counter(run_id for k, run_id, _ in (line.split() for line in lines) if k == kind)


def runners(tmp_path: Path, kind: str) -> collections.Counter[str]:
    """How many runs of ``kind`` each process (pid) executed."""
    lines = (tmp_path / "calls.txt").read_text().splitlines()
    return collections.Counter(pid for k, _, pid in (line.split() for line in lines) if k == kind)


def recorded(store_url: str, workflow: str) -> list[tuple[str, str]]:
    """(run id, status) of every run of ``workflow`` the store holds."""
    from pyagent.durability.stores import close_store, open_store

    async def read() -> list[tuple[str, str]]:
        store = await open_store(store_url)
        try:
            return [(h.run_id, h.status) for h in await store.list_runs(workflow=workflow)]
        finally:
            await close_store(store)

    return anyio.run(read)


def fire_id(instant: int) -> str:
    return "tick@" + dt.datetime.fromtimestamp(instant, dt.UTC).strftime(_STAMP)


def post_to_all(replicas: list[Served], key: str) -> list[httpx.Response]:
    """POST one idempotency key to every replica at the same moment."""
    barrier = threading.Barrier(len(replicas))

    def post(replica: Served) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            barrier.wait(30)
            return client.post(f"{replica.url}/jobs", json={"order": key}, headers={"Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(len(replicas)) as pool:
        return list(pool.map(post, replicas))


def test_three_replicas_fire_each_tick_and_each_idempotency_key_exactly_once(
        cluster: list[Served], tmp_path: Path, store_url: str) -> None:
    all_up = time.time()
    # Webhooks while the schedule ticks: each key to the three replicas at once, a few times.
    answers: dict[str, list[httpx.Response]] = {}
    deadline = all_up + WINDOW
    n = 0
    while time.time() < deadline:
        key = f"order-{n}"
        answers[key] = post_to_all(cluster, key)
        n += 1
        time.sleep(min(1.5, max(0.0, deadline - time.time())))
    stopping = time.time()
    codes = [r.stop() for r in cluster]
    assert codes == [0] * REPLICAS, "\n\n".join(r.output for r in cluster)

    # Every key: one run id from all three replicas, created by exactly one of them, run once.
    assert len(answers) >= 10
    for key, responses in answers.items():
        assert [r.status_code for r in responses] == [202] * REPLICAS, (key, [r.text for r in responses])
        run_ids = {r.json()["run_id"] for r in responses}
        assert len(run_ids) == 1, (key, run_ids)
        fresh = [r for r in responses if r.headers.get("idempotent-replayed") != "true"]
        assert len(fresh) == 1, (key, [dict(r.headers) for r in responses])
    jobs = executions(tmp_path, "job")
    keyed = {next(iter({r.json()["run_id"] for r in rs})) for rs in answers.values()}
    assert set(jobs) == keyed and set(jobs.values()) == {1}, jobs
    assert sorted(run_id for run_id, status in recorded(store_url, "job")) == sorted(keyed)
    assert {status for _, status in recorded(store_url, "job")} == {"completed"}

    # Every tick while all three served: recorded once, completed, run exactly once.
    ticks = dict(recorded(store_url, "tick"))
    ran = executions(tmp_path, "tick")
    assert all(count == 1 for count in ran.values()), {k: c for k, c in ran.items() if c != 1}
    expected = [fire_id(t) for t in range(int(all_up) + 1, int(stopping))]
    assert len(expected) >= WINDOW - 2
    missing = [f for f in expected if ticks.get(f) != "completed" or ran.get(f) != 1]
    assert not missing, {f: (ticks.get(f), ran.get(f)) for f in missing}
    # Nothing ran that is not recorded, and the work was shared: no one replica did every tick.
    assert set(ran) <= set(ticks)
    assert len(runners(tmp_path, "tick")) >= 2, runners(tmp_path, "tick")
    # And no replica tripped over another's runs (a run started twice, then refused).
    for r in cluster:
        assert "could not start" not in r.output and "Traceback" not in r.output, r.output
