"""Workflows `pyagent a2a serve` publishes in the tests (with a pattern of their own, so they run
with only the kernel and pyagent-a2a installed)."""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from pyagent import agent
from pyagent.orchestrator import Task, Workflow
from pyagent.plugin import get_runtime
from pyagent.testing import PassForward

get_runtime().register(PassForward.plugin("pass_forward"), "pass-forward")


class Forecast(BaseModel):
    city: str
    days: int = 1


def gather(q: Forecast) -> dict:
    return {"city": q.city, "days": q.days, "temps": [11, 12, 13][: q.days]}


weather = Workflow(
    name="Weather Desk", pattern="pass_forward", input_model=Forecast,
    description="Weather forecasts: temperatures, rain and wind for a city",
    steps=[Task(name="gather", agent=agent(gather)),
           Task(name="summarize", agent=agent(lambda d: f"{d['city']}: {d['temps']}", name="summarize"))])


async def step(x: str) -> str:
    await anyio.sleep(0.3)
    return x + "."


research = Workflow(
    name="Research", pattern="pass_forward",
    description="Tidal and ocean research notes, written slowly in several steps",
    steps=[Task(name=f"step{i}", agent=agent(step, name=f"step{i}")) for i in range(4)])


async def forever(x: str) -> str:
    await anyio.sleep(3600)
    return x


stuck = Workflow(name="Stuck", pattern="pass_forward", description="Never finishes on its own",
                 steps=[Task(name="wait", agent=agent(forever))])
