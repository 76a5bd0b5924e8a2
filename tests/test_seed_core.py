"""Seed sections 2.1, 2.2, 2.3 (running with callbacks), 3.1, 3.2 and 7.3, as written.

Function agents stand in for the LLM agents the seed leaves undefined.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import agent
from pyagent.orchestrator import (
    ConditionalTask,
    ExecutionPattern,
    Orchestrator,
    Task,
    TaskStatus,
    Workflow,
)

pytestmark = pytest.mark.anyio

researcher_agent = researcher = agent(lambda topic: f"research({topic})", name="researcher")
analyst = agent(lambda x: f"analysis({x})", name="analyst")
writer = agent(lambda x: f"draft({x})", name="writer")


async def test_seed_2_1_task() -> None:
    task = Task(
        name="Research AI trends",
        description="Gather latest AI developments",
        agent=researcher_agent,
        dependencies=[],  # No dependencies = can run immediately
        metadata={"priority": "high"}
    )
    assert task.metadata == {"priority": "high"} and task.agent is researcher_agent
    assert [s.value for s in TaskStatus][:4] == ["pending", "running", "completed", "failed"]


async def test_seed_2_2_workflow() -> None:
    workflow = Workflow(
        name="Research Report",
        pattern=ExecutionPattern.SEQUENTIAL,
        steps=[
            Task(name="Research", agent=researcher),
            Task(name="Analyze", agent=analyst),
            Task(name="Write", agent=writer)
        ]
    )

    # Execute
    result = await workflow.run()
    assert result.status == "completed"
    assert result.output == "draft(analysis(research(None)))"


async def test_seed_2_3_run_with_callbacks() -> None:
    research_workflow = Workflow(name="Research Report", steps=[Task(name="Research", agent=researcher)])
    support_workflow = Workflow(name="Support", steps=[Task(name="Answer", agent=writer)])
    orchestrator = Orchestrator()

    # Add workflows
    orchestrator.add_workflow(research_workflow)
    orchestrator.add_workflow(support_workflow)

    printed: list[str] = []
    print = printed.append  # capture the seed's print calls

    # Run with callbacks
    result = await orchestrator.run_workflow(
        "Research Report",
        on_task_complete=lambda t: print(f"Done: {t.name}")
    )
    assert result.ok and printed == ["Done: Research"]


async def test_seed_3_1_sequential() -> None:
    research, analyze, write, review = (
        Task(name=n, agent=agent(lambda x, n=n: f"{n}({x})", name=n)) for n in ("research", "analyze", "write", "review")
    )
    workflow = Workflow(
        name="Content Pipeline",
        pattern=ExecutionPattern.SEQUENTIAL,
        steps=[research, analyze, write, review]
    )
    result = await workflow.run("AI")
    assert result.output == "review(write(analyze(research(AI))))"


async def test_seed_3_2_parallel() -> None:
    async def search(source: str, topic: Any) -> list[str]:
        await anyio.sleep(0.01)
        return [f"{source}:{topic}"]

    news_research = Task(name="News", agent=lambda t: search("news", t))
    social_research = Task(name="Social", agent=lambda t: search("social", t))
    paper_research = Task(name="Papers", agent=lambda t: search("papers", t))

    def merge_results(results: dict[str, list[str]]) -> list[str]:
        return [x for xs in results.values() for x in xs]

    workflow = Workflow(
        name="Multi-Source Research",
        pattern=ExecutionPattern.PARALLEL,
        steps=[news_research, social_research, paper_research],
        reducer=merge_results
    )
    result = await workflow.run("AI")
    assert result.output == ["news:AI", "social:AI", "papers:AI"]


@pytest.mark.parametrize(("score", "branch"), [(0.95, "Approve"), (0.2, "Escalate")])
async def test_seed_7_3_conditional(score: float, branch: str) -> None:
    class Scored:
        def __init__(self, score: float) -> None:
            self.score = score

    workflow = Workflow(
        name="Conditional Flow",
        steps=[
            Task(name="Analyze"),
            ConditionalTask(
                condition=lambda ctx: ctx.result.score > 0.8,
                if_true=Task(name="Approve"),
                if_false=Task(name="Escalate")
            )
        ]
    )
    # The seed's tasks carry no agents; the function agents are attached here.
    workflow.step("Analyze").agent = agent(lambda x: Scored(score), name="analyze")
    workflow.step("Approve").agent = agent(lambda s: "approved", name="approve")
    workflow.step("Escalate").agent = agent(lambda s: "escalated", name="escalate")
    result = await workflow.run()
    assert result.output == {"Approve": "approved", "Escalate": "escalated"}[branch]
    other = "Escalate" if branch == "Approve" else "Approve"
    assert result.tasks[branch].status is TaskStatus.COMPLETED
    assert result.tasks[other].status is TaskStatus.SKIPPED


def test_seed_7_3_without_agents_fails_before_running() -> None:
    workflow = Workflow(
        name="Conditional Flow",
        steps=[
            Task(name="Analyze"),
            ConditionalTask(
                condition=lambda ctx: ctx.result.score > 0.8,
                if_true=Task(name="Approve"),
                if_false=Task(name="Escalate")
            )
        ]
    )
    with pytest.raises(Exception, match="task 'Analyze' in workflow 'Conditional Flow' has no agent"):
        anyio.run(workflow.run)
