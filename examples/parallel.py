"""Seed §3.2: three research sources at once, merged by a reducer; then the collect failure policy."""

from __future__ import annotations

import time

import anyio

from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow


def source(name: str, delay: float, fail: bool = False) -> object:
    async def search(topic: str) -> list[str]:
        await anyio.sleep(delay)
        if fail:
            raise ConnectionError(f"{name} API unreachable")
        return [f"{name}: {topic} item {i}" for i in range(2)]

    return agent(search, name=name)


def merge_results(results: dict[str, list[str]]) -> dict[str, object]:
    """Called with {task name: output} in step order."""
    return {"sources": list(results), "items": [i for items in results.values() for i in items]}


news_research = Task(name="News", agent=source("news", 0.2))
social_research = Task(name="Social", agent=source("social", 0.2))
paper_research = Task(name="Papers", agent=source("papers", 0.2))

workflow = Workflow(
    name="Multi-Source Research",
    pattern=ExecutionPattern.PARALLEL,
    steps=[news_research, social_research, paper_research],
    reducer=merge_results,
)

tolerant = Workflow(
    name="Tolerant Research",
    pattern=ExecutionPattern.PARALLEL,
    steps=[Task(name="News", agent=source("news", 0.05)), Task(name="Social", agent=source("social", 0.05, fail=True))],
    reducer=merge_results,
    failure_policy="collect",
)


async def main() -> None:
    start = time.perf_counter()
    result = await workflow.run("agents")
    print(f"{result.status} in {time.perf_counter() - start:.2f}s (three 0.2s sources ran at once)")
    print(result.output)
    partial = await tolerant.run("agents")
    print(f"collect policy: {partial.status}, output={partial.output['sources']}, errors={partial.errors}")


if __name__ == "__main__":
    anyio.run(main)
