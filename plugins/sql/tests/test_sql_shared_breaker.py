"""A circuit breaker shared by real processes through SQLite and PostgreSQL (``shared=True``).

Each process is a fresh interpreter running the same workflow against the same database; the
only thing they share is the ``pyagent_breakers`` row.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from pyagent.durability.store import BreakerRecord
from pyagent.plugins import get_runtime

# One process: a workflow with a shared breaker, run ``runs`` times (with ``together``: all at
# once, when the test says go). Prints what happened as JSON.
WORKER = """
import json, sys, time
import anyio
from pyagent import CircuitOpenError, Task, Workflow
from pyagent.durability.breakers import shared_breaker
from pyagent.plugins import get_runtime
from pyagent.testing import PassForward

args = json.loads(sys.argv[1])
get_runtime().register(PassForward.plugin(), "pass-forward")
calls = []

async def service(x):
    calls.append(time.time())
    if args.get("slow"):
        await anyio.sleep(args["slow"])
    if args["fail"]:
        raise ConnectionError("service unavailable")
    return "ok"

workflow = Workflow(name="Protected Flow", steps=[Task(name="call", agent=service)], circuit_breaker={
    "failure_threshold": args["threshold"], "reset_timeout": args.get("reset", 60), "half_open_requests": 1,
    "shared": True, "storage": args["url"], "store_timeout": args.get("store_timeout", 5)})

async def main():
    outcomes = []

    async def one():
        result = await workflow.run()
        outcomes.append("refused" if isinstance(result.exception, CircuitOpenError) else result.status.value)

    if args.get("together"):
        # Ready (imported, the store opened): wait for the test to start every process at once.
        await shared_breaker(workflow, get_runtime().clock).refresh()
        print("ready", flush=True)
        sys.stdin.readline()
    if args.get("together"):
        async with anyio.create_task_group() as tg:
            for _ in range(args["runs"]):
                tg.start_soon(one)
    else:
        for _ in range(args["runs"]):
            await one()
    print(json.dumps({"calls": len(calls), "outcomes": outcomes, "circuit": workflow.get_state().circuit}))

anyio.run(main)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A database whose schema exists already, as in a deployment (creating it is not timed here)."""
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    assert stored(url) is None
    return url


def start(url: str, **args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps({"url": url, **args})],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def together(url: str, processes: int, **args: Any) -> list[dict[str, Any]]:
    """Start ``processes`` workers, wait until each is ready, then let them all go at once."""
    procs = [start(url, together=True, **args) for _ in range(processes)]
    try:
        for p in procs:
            assert p.stdout is not None
            pool = concurrent.futures.ThreadPoolExecutor(1)
            try:
                line = pool.submit(p.stdout.readline).result(timeout=60)  # killed below if it never comes
            finally:
                pool.shutdown(wait=False)
            assert line == "ready\n", line
    except BaseException:
        for p in procs:
            p.kill()
            p.communicate()
        raise
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return finish(*procs)


def finish(*procs: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def process(url: str, **args: Any) -> dict[str, Any]:
    return finish(start(url, **args))[0]


def stored(url: str) -> BreakerRecord | None:
    async def read() -> BreakerRecord | None:
        store = get_runtime().driver("stores", url.split("://", 1)[0])(url)
        await store.open()
        try:
            record: BreakerRecord | None = await store.get_breaker("Protected Flow")
            return record
        finally:
            await store.close()

    return anyio.run(read)


def test_failures_counted_in_two_processes_open_the_breaker_for_a_third(url: str) -> None:
    first = process(url, fail=True, threshold=4, runs=2)
    second = process(url, fail=True, threshold=4, runs=2)
    assert first["outcomes"] == ["failed", "failed"] and second["outcomes"] == ["failed", "failed"]
    assert second["circuit"]["state"] == "open"  # the fourth failure, counted across both, opened it
    third = process(url, fail=False, threshold=4, runs=3)
    assert third["outcomes"] == ["refused"] * 3 and third["calls"] == 0  # no agent called at all
    record = stored(url)
    assert record is not None and record.state == "open" and record.times_opened == 1


def test_failures_from_two_processes_at_once_are_all_counted(url: str) -> None:
    # Two processes each record 15 failures, concurrently: no lost update (compare-and-swap).
    outs = together(url, 2, fail=True, threshold=1000, runs=15, store_timeout=60)
    assert all(o["outcomes"] == ["failed"] * 15 for o in outs)
    record = stored(url)
    assert record is not None and record.state == "closed" and record.failures == 30


def test_half_open_lets_one_trial_through_across_processes(url: str) -> None:
    process(url, fail=True, threshold=2, runs=2, reset=1.0)
    record = stored(url)
    assert record is not None and record.state == "open"
    time.sleep(max(0.0, record.opened_at + 1.0 - time.time()) + 0.1)  # type: ignore[operator]
    # Half-open now. Two processes, three runs each at the same instant, each run taking 2 s:
    # one trial goes through in all, every other run is refused while it is in flight.
    outs = together(url, 2, fail=False, threshold=2, runs=3, slow=2.0, reset=1.0)
    outcomes = sorted(o for out in outs for o in out["outcomes"])
    assert outcomes == ["completed"] + ["refused"] * 5
    assert sum(o["calls"] for o in outs) == 1
    record = stored(url)
    assert record is not None and record.state == "closed" and record.trials == 0
