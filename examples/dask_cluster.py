"""The same workflow on a Dask cluster: agents run on worker processes, policies stay here.

Without an address the ``dask`` executor starts a local cluster (127.0.0.1, no dashboard) and
the orchestrator closes it. On a real cluster nothing here changes; configuration does it:

    [tool.pyagent]
    executor = "dask"
    dask_address = "tcp://scheduler:8786"

The ``if __name__ == "__main__":`` guard matters: Dask starts its workers as new processes,
which import this file again.
"""

from __future__ import annotations

import asyncio
import os

from pyagent import Orchestrator, RetryConfig, agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow


def tokenize(text: str) -> list[str]:
    """A sync agent: runs in a worker thread."""
    return text.lower().split()


async def score(words: list[str], ctx: object) -> dict[str, object]:
    """An async agent: runs on the worker's event loop; it reads what ran before it."""
    await asyncio.sleep(0.01)
    return {"words": len(words), "distinct": len(set(words)), "worker_pid": os.getpid()}


class Summarizer:
    """A class agent: anything with a name and an async run(input, ctx)."""

    name = "summarizer"
    description = "one line about the text"

    async def run(self, stats: dict[str, object], ctx: object) -> str:
        return f"{stats['words']} words, {stats['distinct']} distinct"


def shard(i: int) -> Task:
    def count(text: str, ctx: object) -> int:
        ctx.state[f"shard{i}"] = "seen"  # type: ignore[attr-defined]  # comes back to the run
        return sum(len(w) for w in text.split()[i::4])

    return Task(name=f"shard{i}", agent=agent(count, name=f"count{i}"),
                retry_config=RetryConfig(max_retries=2, initial_delay=0.1))


CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "cluster_options": {"resources": {"GPU": 1}}}

analysis = Workflow(
    name="Text Analysis",
    executor="dask", executor_options=CLUSTER,
    steps=[Task(name="tokenize", agent=tokenize), Task(name="score", agent=score),
           Task(name="summarize", agent=Summarizer(), resources={"GPU": 1})],
)

letters = Workflow(
    name="Letter Count", pattern=ExecutionPattern.PARALLEL,
    executor="dask", executor_options=CLUSTER,
    steps=[shard(i) for i in range(4)], reducer=lambda counts: sum(counts.values()),
)


async def main() -> None:
    text = "The quick brown fox jumps over the lazy dog and the dog sleeps"
    async with Orchestrator() as orchestrator:  # closes the local cluster on the way out
        orchestrator.add_workflow(analysis)
        orchestrator.add_workflow(letters)
        result = await orchestrator.run_workflow("Text Analysis", text)
        print(f"{result.status.value}: {result.output}")
        pid = result.outputs["score"]["worker_pid"]
        print(f"scored on a worker process: {pid != os.getpid()}")
        counted = await orchestrator.run_workflow("Letter Count", text)
        print(f"{counted.status.value}: {counted.output} letters in 4 shards; "
              f"state written on workers: {sorted(letters.get_state().shared)}")


if __name__ == "__main__":
    asyncio.run(main())
