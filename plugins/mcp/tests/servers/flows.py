"""Workflows `pyagent mcp serve` publishes in the tests: one with a declared input model, one free.

They run on a pattern of their own, so they run with only the kernel and pyagent-mcp installed.
"""

from __future__ import annotations

from pydantic import BaseModel

from pyagent import agent
from pyagent.orchestrator import Task, Workflow
from pyagent.plugin import get_runtime
from pyagent.testing import PassForward

get_runtime().register(PassForward.plugin("pass_forward"), "pass-forward")


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
    pattern="pass_forward",
    steps=[Task(name="research", agent=agent(research)), Task(name="draft", agent=agent(draft)),
           Task(name="review", agent=agent(review))])

echo = Workflow(name="echo", pattern="pass_forward", steps=[Task(name="say", agent=agent(lambda x: {"echo": x}, name="say"))])
