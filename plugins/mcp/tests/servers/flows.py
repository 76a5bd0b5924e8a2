"""Workflows `pyagent mcp serve` publishes in the tests: one with a declared input model, one free."""

from __future__ import annotations

from pydantic import BaseModel

from pyagent import agent
from pyagent.orchestrator import Task, Workflow


class Topic(BaseModel):
    subject: str
    words: int = 3


def research(topic: Topic) -> str:
    return f"notes on {topic.subject}"


def draft(notes: str) -> str:
    return f"draft from {notes}"


def review(text: str) -> str:
    return text.upper()


report = Workflow(
    name="Research Report", description="Writes a short report on a subject", input_model=Topic,
    steps=[Task(name="research", agent=agent(research)), Task(name="draft", agent=agent(draft)),
           Task(name="review", agent=agent(review))])

echo = Workflow(name="echo", steps=[Task(name="say", agent=agent(lambda x: {"echo": x}, name="say"))])
