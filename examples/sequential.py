"""Seed §2.1, §2.2, §3.1: a sequential content pipeline with function agents standing in for LLMs."""

from __future__ import annotations

import anyio

from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Orchestrator, Task, TaskStatus, Workflow


@agent(name="researcher", description="Gathers the latest developments on a topic")
async def researcher(topic: str | None) -> list[str]:
    topic = topic or "AI trends"
    return [f"{topic}: agents everywhere", f"{topic}: smaller models", f"{topic}: evals matter"]


analyst = agent(lambda facts: {"facts": facts, "theme": "efficiency"}, name="analyst")
writer = agent(lambda analysis: f"Report on {analysis['theme']}: " + "; ".join(analysis["facts"]), name="writer")
reviewer = agent(lambda text: text if len(text) < 400 else text[:397] + "...", name="reviewer")

# §2.1: a task
task = Task(
    name="Research AI trends",
    description="Gather latest AI developments",
    agent=researcher,
    dependencies=[],
    metadata={"priority": "high"},
)
assert task.dependencies == [] and TaskStatus.PENDING.value == "pending"

# §3.1: the content pipeline
research, analyze, write, review = (
    Task(name="Research", agent=researcher),
    Task(name="Analyze", agent=analyst),
    Task(name="Write", agent=writer),
    Task(name="Review", agent=reviewer),
)
workflow = Workflow(
    name="Content Pipeline",
    pattern=ExecutionPattern.SEQUENTIAL,
    steps=[research, analyze, write, review],
)


async def main() -> None:
    # §2.3: through an orchestrator, with a callback per completed task
    orchestrator = Orchestrator()
    orchestrator.add_workflow(workflow)
    result = await orchestrator.run_workflow("Content Pipeline", on_task_complete=lambda t: print(f"Done: {t.name}"))
    print(result.status, "->", result.output)


if __name__ == "__main__":
    anyio.run(main)
