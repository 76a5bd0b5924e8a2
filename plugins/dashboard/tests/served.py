"""A file for ``pyagent serve``, as the dashboard's serve tests start it: a schedule, webhooks.

- ``heartbeat``: a cron schedule firing every 2 seconds (a seconds field), in Europe/Berlin;
- ``weekday report``: 09:00 on weekdays in New York (it does not fire during a test);
- ``POST /hooks/intake``: a workflow that completes;
- ``POST /hooks/ledger``: a workflow that fails while the file named by
  ``PYAGENT_DASHBOARD_TEST_LEDGER_UP`` does not exist (the ledger is "down"), so a test can
  resume it from the dashboard once it created the file;
- ``POST /hooks/crunch``: a workflow whose second task waits (a minute), for cancelling;
- ``POST /hooks/refund``: a workflow whose second task asks a person to approve the refund
  (``ctx.interrupt`` with a schema: approved, an amount of at most 500, a reason from a list,
  tags, an optional note), so the run waits until it is answered on the Approvals page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from pyagent.orchestrator import Orchestrator, Task, Workflow

LEDGER_UP = Path(os.environ.get("PYAGENT_DASHBOARD_TEST_LEDGER_UP", "ledger-up"))


def post(entries: Any) -> str:
    if not LEDGER_UP.exists():
        raise ConnectionError("ledger service is down")
    return f"posted {entries}"


async def crunch_numbers(x: Any) -> str:
    await anyio.sleep(60)
    return "crunched"


tick = Workflow(name="tick", steps=[Task(name="beat", agent=lambda x: "beat")])
report = Workflow(name="report", steps=[Task(name="write", agent=lambda x: "the weekday report")])
intake = Workflow(name="intake", steps=[
    Task(name="read", agent=lambda body: f"order {body['order']}"),
    Task(name="file", agent=lambda text: f"filed {text}"),
])
ledger = Workflow(name="ledger", steps=[
    Task(name="prepare", agent=lambda body: f"entries for invoice {body['invoice']}"),
    Task(name="post", agent=post),
    Task(name="confirm", agent=lambda posted: f"confirmed: {posted}"),
])

crunch = Workflow(name="crunch", steps=[
    Task(name="load", agent=lambda body: body),
    Task(name="crunch", agent=crunch_numbers),
])



class Refund(BaseModel):
    """A refund decision."""

    approved: bool
    amount: int = Field(ge=0, le=500, description="in dollars; at most 500 without a manager")
    reason: Literal["damaged", "late", "goodwill"]
    tags: list[str] = []
    note: str | None = None


async def approve_refund(order: Any, ctx: Any) -> dict[str, Any]:
    decision = await ctx.interrupt(f"Refund order {order['order']} (${order['amount']} claimed)?", schema=Refund,
                                   timeout=3600, metadata={"customer": order.get("customer", "")})
    return decision.model_dump()


refund = Workflow(name="refund", steps=[
    Task(name="assess", agent=lambda body: body),
    Task(name="approve", agent=approve_refund),
    Task(name="pay", agent=lambda d: f"refunded ${d['amount']}" if d["approved"] else "refund refused"),
])

orchestrator = Orchestrator()
orchestrator.schedule(tick, cron="* * * * * */2", timezone="Europe/Berlin", name="heartbeat", misfire="skip")
orchestrator.schedule(report, cron="0 9 * * MON-FRI", timezone="America/New_York", name="weekday report")
orchestrator.on_webhook("/hooks/intake", workflow=intake)
orchestrator.on_webhook("/hooks/ledger", workflow=ledger)
orchestrator.on_webhook("/hooks/crunch", workflow=crunch)
orchestrator.on_webhook("/hooks/refund", workflow=refund)
