"""Seed §5.1 and §5.2: retry a flaky agent with backoff, then fall back to a backup agent.

Function agents stand in for LLM agents: ``flaky_search`` fails twice before it answers,
``primary_agent`` always fails and leaves partial output on its error.
"""

from __future__ import annotations

from typing import Any

from pyagent import RunContext
from pyagent.orchestrator import Task, Workflow

calls = {"search": 0}


def flaky_search(topic: str) -> str:
    calls["search"] += 1
    if calls["search"] < 3:
        raise ConnectionError(f"search API unavailable (call {calls['search']})")
    return f"3 sources on {topic}"


class PartialAnswer(RuntimeError):
    """An error that carries what the agent produced before failing."""

    def __init__(self, message: str, partial_output: Any) -> None:
        super().__init__(message)
        self.partial_output = partial_output


def primary_agent(sources: str) -> str:
    raise PartialAnswer("context window exceeded", partial_output=f"draft from {sources} (half done)")


def backup_agent(sources: str, ctx: RunContext) -> str:
    # With fallback_strategy="supplement" the backup sees the primary's error and partial output.
    return f"{ctx.partial_output} -> finished by backup after: {ctx.error}"


workflow = Workflow(name="Resilient Research", steps=[
    Task(
        name="Critical Operation",
        agent=flaky_search,
        retry_config={
            "max_retries": 3,
            "backoff": "exponential",  # or "linear", "constant"
            "initial_delay": 0.05,
            "max_delay": 1.0,
        },
    ),
    Task(
        name="Research",
        agent=primary_agent,
        fallback_agent=backup_agent,  # Used if primary fails
        fallback_strategy="supplement",  # or "substitute"
    ),
])

if __name__ == "__main__":
    events: list[str] = []
    result = workflow.run_sync("AI trends", on_event=lambda e: events.append(
        f"{e.kind} {e.task} attempt={e.data.get('attempt')} delay={e.data.get('delay')}"
        if e.kind == "task.retrying" else f"{e.kind} {e.task or ''}"))
    print("\n".join(events))
    print(f"\nstatus: {result.status}  output: {result.output}")
    critical = result.tasks["Critical Operation"]
    print(f"'Critical Operation' took {len(critical.attempts)} attempts ({critical.retries} retries):")
    for attempt in critical.attempts:
        print(f"  #{attempt.number} {attempt.agent}: {attempt.error or 'ok'}")
    research = result.tasks["Research"]
    print(f"'Research' answered by {research.agent} ({research.fallback_strategy}); "
          f"primary error kept: {research.primary_error}; partial output kept: {research.primary_output!r}")
