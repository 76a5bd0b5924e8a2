"""Starting and closing: the local cluster the executor starts, an unreachable scheduler, exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import cloudpickle
import psutil
import pytest
from pyagent_dask import DaskConnectionError, DaskExecutor

from pyagent import Orchestrator, Task, TaskStatus, Workflow
from pyagent.plugin import DriverLoadFailure

# The agents below live in this test module, which workers cannot import: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not all(gone(p) for p in pids):
            await anyio.sleep(0.05)


def pid(x: Any) -> int:
    return os.getpid()


async def test_without_an_address_it_starts_a_local_cluster_that_closes_with_the_orchestrator(
        dask_runtime: Any) -> None:
    options = {"n_workers": 1, "threads_per_worker": 1}
    wf = Workflow(name="local-cluster", executor="dask", executor_options=options,
                  steps=[Task(name="pid", agent=pid)])
    async with Orchestrator() as orchestrator:
        orchestrator.add_workflow(wf)
        result = await orchestrator.run_workflow("local-cluster")
        assert result.status is TaskStatus.COMPLETED, result.error
        executor = dask_runtime.executor("dask", options)
        cluster, client = executor.cluster, executor.client
        assert cluster is not None and cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        info = client.scheduler_info()
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        # No dashboard: the scheduler's HTTP server (health checks) is on an ephemeral port of
        # 127.0.0.1 and has no dashboard page.
        (http,) = [s.getsockname() for s in cluster.scheduler.http_server._sockets.values()]
        assert http[0] == "127.0.0.1" and http[1] != 8787
        assert await http_status(http[1], "/status") == 404
        assert await http_status(http[1], "/health") == 200
        workers = list(client.run(os.getpid).values())
        assert result.output in workers and result.output != os.getpid()
    assert cluster.status.name == "closed" and client.status == "closed"
    await wait_gone(workers)
    # A later run opens a new one.
    again = await wf.run()
    assert again.status is TaskStatus.COMPLETED and again.output not in workers


async def http_status(port: int, path: str) -> int:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await stream.receive()
    return int(head.split()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout(dask_runtime: Any) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    ran: list[Any] = []
    wf = Workflow(name="nowhere", executor="dask", executor_options={"address": address, "connect_timeout": 2},
                  steps=[Task(name="t", agent=ran.append)])
    started = time.monotonic()
    with pytest.raises(DaskConnectionError) as info:
        await wf.run(1)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert f"could not reach the Dask scheduler at {address} within 2s" in message
    assert "dask_address" in message and info.value.address == address and ran == []
    assert isinstance(info.value, DriverLoadFailure)


def test_options_are_checked_when_the_executor_is_built(dask_runtime: Any) -> None:
    with pytest.raises(DriverLoadFailure, match=r"unknown option\(s\) workers for the dask executor: valid are address"):
        dask_runtime.executor("dask", {"workers": 3})
    with pytest.raises(DriverLoadFailure, match="connect_timeout must be a number > 0, got 0"):
        dask_runtime.executor("dask", {"connect_timeout": 0})
    assert DaskExecutor(address="tcp://127.0.0.1:8786").supports_resources is True


def test_a_local_cluster_left_open_is_closed_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "left_open.py"
    script.write_text(textwrap.dedent("""
        import os
        from pyagent import Task, Workflow
        from pyagent.plugin import get_runtime
        from pyagent.testing import PassForward

        def pid(x):
            return os.getpid()

        if __name__ == "__main__":
            get_runtime().register(PassForward.plugin(), "pass-forward")
            wf = Workflow(name="w", executor="dask", executor_options={"n_workers": 1, "threads_per_worker": 1},
                          steps=[Task(name="pid", agent=pid)])
            result = wf.run_sync()
            executor = get_runtime().executor("dask", {"n_workers": 1, "threads_per_worker": 1})
            print(result.output, *executor.client.run(os.getpid).values(), flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    first, *workers = [int(p) for p in out.stdout.split()]
    assert first in workers
    deadline = time.monotonic() + 30
    while not all(gone(p) for p in workers):
        assert time.monotonic() < deadline, "the local cluster's workers outlived the process"
        time.sleep(0.05)
