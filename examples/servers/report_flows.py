"""A workflow to serve as an MCP tool: `pyagent mcp serve examples/servers/report_flows.py`."""

from __future__ import annotations

from pydantic import BaseModel

from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow


class Topic(BaseModel):
    """What to write about."""

    subject: str
    audience: str = "engineers"


def research(topic: Topic) -> dict[str, str]:
    return {"subject": topic.subject, "audience": topic.audience,
            "notes": f"three facts about {topic.subject}"}


def write(notes: dict[str, str]) -> str:
    return f"A report for {notes['audience']} on {notes['subject']}: {notes['notes']}."


def review(text: str) -> str:
    return text + " Reviewed."


report = Workflow(
    name="Research Report", pattern=ExecutionPattern.SEQUENTIAL, input_model=Topic,
    description="Researches a subject and writes a short reviewed report",
    steps=[Task(name="research", agent=agent(research)), Task(name="write", agent=agent(write)),
           Task(name="review", agent=agent(review))])
