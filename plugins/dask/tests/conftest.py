from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyagent.plugin import Runtime, TaskGroup, hookimpl
from pyagent.testing import PassForward
from pyagent.testing_fixtures import *  # noqa: F403


class FanOut:
    """Every step at once on the run's input; the outputs by task name (the tests' own parallel pattern)."""

    async def execute(self, run: Any) -> dict[str, Any]:
        outputs: dict[str, Any] = {}

        async def one(step: Any) -> None:
            outputs[step.name] = (await run.run_step(step, run.input)).output

        async with TaskGroup() as group:
            for step in run.workflow.steps:
                group.start_soon(one, step)
        return outputs


class Patterns:
    @hookimpl
    def pyagent_register_patterns(self, register: Any) -> None:
        register("fanout", FanOut())


@pytest.fixture
def dask_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """The discovering runtime with a sequential and a fan-out pattern; its executors closed after."""
    runtime.register(PassForward.plugin(), "pass-forward")
    runtime.register(Patterns(), "fanout")
    yield runtime
    asyncio.run(runtime.close_executors())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A real LocalCluster, 2 worker processes on 127.0.0.1, no dashboard, once per test module.

    ``allowed_failures=0`` as the executor sets for the clusters it starts: a worker that dies
    fails the task at once instead of Dask re-running it.
    """
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                           dashboard_address=None,
                           scheduler_kwargs={"allowed_failures": 0, "dashboard": False,
                                             "dashboard_address": "127.0.0.1:0"})
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    """A client of the test cluster, to look at the scheduler and workers from the test."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture
def address(cluster: Any, client: Any) -> str:
    client.wait_for_workers(2, timeout=60)  # a worker a previous test killed is back
    return str(cluster.scheduler_address)


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
