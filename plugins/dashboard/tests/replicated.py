"""A file for two ``pyagent serve`` replicas sharing one store that is a run queue, as the
dashboard's replica tests start them.

- ``POST /hooks/steps``: ``first``, then ``gated`` (it waits until the file named by
  ``PYAGENT_DASHBOARD_TEST_GATE`` exists), then ``last``; one run at a time across the
  replicas (``max_active_runs=1``), so a second one stays queued while the first goes on;
- ``POST /hooks/ledger``: fails while the file named by ``PYAGENT_DASHBOARD_TEST_LEDGER_UP``
  does not exist (the ledger is "down").

Every task appends ``task run pid`` to the file named by ``PYAGENT_DASHBOARD_TEST_CALLS``, so a
test sees which process ran what.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow

CALLS = Path(os.environ.get("PYAGENT_DASHBOARD_TEST_CALLS", "calls.txt"))
GATE = Path(os.environ.get("PYAGENT_DASHBOARD_TEST_GATE", "gate"))
LEDGER_UP = Path(os.environ.get("PYAGENT_DASHBOARD_TEST_LEDGER_UP", "ledger-up"))


def note(task: str, body: Any) -> None:
    with CALLS.open("a") as f:  # O_APPEND: one whole line per write, from any process
        f.write(f"{task} {body['n']} {os.getpid()}\n")


def step(name: str, gated: bool = False) -> Any:
    async def agent(body: Any) -> Any:
        note(name, body)
        while gated and not GATE.exists():
            await anyio.sleep(0.05)
        return body

    agent.__name__ = name
    return agent


def post(body: Any) -> str:
    note("post", body)
    if not LEDGER_UP.exists():
        raise ConnectionError("ledger service is down")
    return f"posted invoice {body['n']}"


steps = Workflow(name="steps", max_active_runs=1, steps=[
    Task(name="first", agent=step("first")),
    Task(name="gated", agent=step("gated", gated=True)),
    Task(name="last", agent=step("last")),
])
ledger = Workflow(name="ledger", steps=[
    Task(name="prepare", agent=lambda body: body),
    Task(name="post", agent=post),
    Task(name="confirm", agent=lambda posted: f"confirmed: {posted}"),
])

orchestrator = Orchestrator()
orchestrator.on_webhook("/hooks/steps", workflow=steps)
orchestrator.on_webhook("/hooks/ledger", workflow=ledger)
