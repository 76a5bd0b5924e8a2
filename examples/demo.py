"""pyagent demo: sequential, parallel and graph steps in one release-notes pipeline.

Run it with ``python examples/demo.py`` (or ``pyagent run examples/demo.py``). Function agents
stand in for LLM agents, so it runs offline and gives the same answer every time.
"""

from __future__ import annotations

import time

import anyio

from pyagent import agent
from pyagent.orchestrator import ConditionalTask, ExecutionPattern, Task, Workflow

# -- agents: plain functions; async ones simulate I/O ----------------------------------------


async def fetch_commits(repo: str | None) -> list[str]:
    repo = repo or "pyagent"
    await anyio.sleep(0.05)
    return [f"{repo}: fix retry backoff", f"{repo}: add graph pattern", f"{repo}: docs for cron"]


def make_searcher(source: str, delay: float) -> object:
    async def search(commits: list[str]) -> list[str]:
        await anyio.sleep(delay)  # the three sources run at the same time
        return [f"{source} mentions '{c.split(': ')[1]}'" for c in commits[:2]]

    return agent(search, name=f"{source}-search", description=f"searches {source}")


def merge_results(results: dict[str, list[str]]) -> list[str]:
    """Parallel reducer: called with {task name: output} in step order."""
    return [item for items in results.values() for item in items]


def draft(inputs: dict[str, object]) -> str:
    commits = inputs["Fetch"]
    mentions = inputs["Research"]
    return f"{len(commits)} changes, {len(mentions)} mentions"  # type: ignore[arg-type]


class Review:
    def __init__(self, text: str, score: float) -> None:
        self.text, self.score = text, score

    def __repr__(self) -> str:
        return f"Review(score={self.score})"


def review(text: str) -> Review:
    return Review(text, score=0.92 if "changes" in text else 0.4)


# -- workflows -------------------------------------------------------------------------------

research = Workflow(
    name="Multi-Source Research",
    pattern=ExecutionPattern.PARALLEL,
    steps=[
        Task(name="News", agent=make_searcher("news", 0.10)),
        Task(name="Social", agent=make_searcher("social", 0.10)),
        Task(name="Papers", agent=make_searcher("papers", 0.10)),
    ],
    reducer=merge_results,
)

writing = Workflow(
    name="Write and Review",
    pattern=ExecutionPattern.SEQUENTIAL,
    steps=[
        Task(name="Draft", agent=draft),
        Task(name="Review", agent=review),
        ConditionalTask(
            condition=lambda ctx: ctx.result.score > 0.8,
            if_true=Task(name="Publish", agent=lambda r: f"published: {r.text}"),
            if_false=Task(name="Escalate", agent=lambda r: f"needs an editor: {r.text}"),
        ),
    ],
)

fetch = Task(name="Fetch", agent=fetch_commits)
release_notes = Workflow(
    name="Release Notes",
    description="graph: Fetch -> Research (parallel) -> Write (sequential)",
    steps=[
        fetch,
        Task(name="Research", agent=research, dependencies=[fetch]),
        Task(name="Write", agent=writing, dependencies=[fetch, "Research"]),
    ],
)


def progress(event: object) -> None:
    kind, task = event.kind, event.task  # type: ignore[attr-defined]
    label = {"task.started": "started", "task.completed": "done", "task.skipped": "skipped",
             "task.failed": "FAILED"}.get(kind)
    if label:
        print(f"  {time.perf_counter() - START:6.3f}s  {event.workflow:<24} {task:<10} {label}")  # type: ignore[attr-defined]


START = time.perf_counter()


async def main() -> None:
    global START
    print(f"Running {release_notes.name!r} ({release_notes.description})")
    START = time.perf_counter()
    result = await release_notes.run("pyagent", on_event=progress)
    print(f"\nstatus: {result.status}   run_id: {result.run_id}")
    print(f"output: {result.output}")
    print(f"research took {result.tasks['Research'].duration:.2f}s for three 0.10s searches (they ran in parallel)")


if __name__ == "__main__":
    anyio.run(main)
