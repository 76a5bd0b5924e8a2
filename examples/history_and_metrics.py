"""Seed §8.1 and §8.3: workflow metrics and the audit trail of past executions.

Five runs of a research workflow, one of which fails; then the metrics and the failed runs
since the start of the year, with their task attempts.
"""

from __future__ import annotations

from pyagent.orchestrator import Orchestrator, Task, Workflow

runs = {"n": 0}


def researcher(topic: str) -> str:
    return f"facts about {topic}"


def analyst(facts: str) -> str:
    runs["n"] += 1
    if runs["n"] in (3, 4):  # both attempts of the third run fail
        raise TimeoutError("analysis model did not answer")
    return f"analysis of {facts}"


def writer(analysis: str) -> str:
    return f"report: {analysis}"


orchestrator = Orchestrator()  # Orchestrator(store="sqlite://runs.db") keeps history across processes
research_workflow = orchestrator.add_workflow(Workflow(name="Research Report", steps=[
    Task(name="Research", agent=researcher),
    Task(name="Analyze", agent=analyst, retry_config={"max_retries": 1, "initial_delay": 0.01}),
    Task(name="Write", agent=writer),
]))

if __name__ == "__main__":
    for topic in ["chips", "energy", "biotech", "robots", "space"]:
        research_workflow.run_sync(topic)
    workflow = research_workflow

    # Get workflow metrics
    metrics = workflow.get_metrics()
    print(metrics.total_executions)
    print(metrics.success_rate)
    print(metrics.avg_duration)
    print(metrics.task_breakdown)

    # Get execution history
    history = orchestrator.get_history(
        workflow="Research Report",
        since="2026-01-01",
        status="failed"
    )

    for execution in history:
        print(f"{execution.timestamp}: {execution.status}")
        print(f"  Tasks: {execution.tasks_completed}/{execution.tasks_total}")
        if execution.error:
            print(f"  Error: {execution.error}")
        for task in execution.tasks:
            for attempt in task.attempts:
                print(f"    {task.name} attempt {attempt.number} by {attempt.agent}: {attempt.error or 'ok'}")
