"""The dask executor's cost per task over raw ``client.submit`` of the same function, same cluster.

1,000 no-op tasks: a 1,000-branch parallel workflow with ``executor="dask"``, against the same
function submitted 1,000 times with ``client.submit`` and gathered, on the same LocalCluster (2
worker processes, 1 thread each, 127.0.0.1), alternating, 5 rounds each after a warm-up. Both
go through Dask's scheduler; the difference is what pyagent adds: the engine, pickling the call
and its context snapshot, the bridge from the run's event loop to the client's, and what comes
back. Goal: <= 1.25x.
"""

from __future__ import annotations

import statistics
import time

import anyio

N = 1_000
ROUNDS = 7


def noop(x: int) -> int:
    return x


async def measure() -> None:
    from distributed import Client, LocalCluster

    from pyagent.orchestrator import ExecutionPattern, Task, Workflow
    from pyagent.plugin import get_runtime

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, scheduler_kwargs={"allowed_failures": 0, "dashboard": False,
                                                                     "dashboard_address": "127.0.0.1:0"})
    client = Client(cluster, set_as_default=False)
    try:
        wf = Workflow(name="dask-overhead", pattern=ExecutionPattern.PARALLEL, executor="dask",
                      executor_options={"address": cluster.scheduler_address},
                      steps=[Task(name=f"t{i}", agent=noop) for i in range(N)], reducer=len)

        def raw() -> list[int]:
            futures = [client.submit(noop, i, pure=False) for i in range(N)]
            return client.gather(futures)  # type: ignore[no-any-return]

        async def through_pyagent() -> float:
            started = time.perf_counter()
            result = await wf.run(1)
            elapsed = time.perf_counter() - started
            assert result.ok and result.output == N, result.error
            return elapsed

        async def through_client() -> float:
            started = time.perf_counter()
            out = await anyio.to_thread.run_sync(raw)
            elapsed = time.perf_counter() - started
            assert len(out) == N
            return elapsed

        await through_pyagent()  # warm-up: connects, ships the code to the workers
        await through_client()
        ours, theirs = [], []
        for _ in range(ROUNDS):
            ours.append(await through_pyagent())
            theirs.append(await through_client())
        await get_runtime().close_executors()
    finally:
        client.close()
        cluster.close()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{N} no-op tasks on a LocalCluster (2 workers x 1 thread), median of {ROUNDS}:")
    print(f"  raw client.submit + gather : {b * 1e3 / N:7.3f} ms/task ({b:.2f} s)")
    print(f"  pyagent, executor='dask'   : {a * 1e3 / N:7.3f} ms/task ({a:.2f} s)")
    print(f"  overhead: {a / b:.2f}x median, {min(ours) / min(theirs):.2f}x best against best "
          f"(goal <= 1.25x)   [rounds, pyagent/raw: "
          + ", ".join(f"{x / y:.2f}" for x, y in zip(ours, theirs, strict=True)) + "]")


if __name__ == "__main__":
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    anyio.run(measure)
