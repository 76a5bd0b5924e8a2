"""Seed §7.2 (events): subscribe workflows to an event, emit it, see filters at work.

A high-priority ticket starts the support workflow (the event is its input: fields read as
attributes); a filter that raises is reported without stopping the others; an event nobody
subscribes to is counted. Then the same while serving: emit returns at once. Kernel only
(plus a pattern plugin).
"""

from __future__ import annotations

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow

support_workflow = Workflow(name="support", steps=[
    Task(name="Triage", agent=lambda e: f"ticket {e.id} ({e.priority}) for {e['team']}"),
])
audit = Workflow(name="audit", steps=[Task(name="Log", agent=lambda e: f"logged {dict(e)}")])
broken = Workflow(name="broken", steps=[Task(name="Never", agent=lambda e: "never runs")])

problems: list[str] = []
orchestrator = Orchestrator(monitors=[lambda ev: ev.kind.startswith("event.") and problems.append(
    f"{ev.kind}: {ev.data.get('error') or ev.data.get('event')}")])

orchestrator.on_event(
    "new_ticket",
    workflow=support_workflow,
    filter=lambda e: e.priority == "high"
)
orchestrator.on_event("new_ticket", workflow=audit)
orchestrator.on_event("new_ticket", workflow=broken, filter=lambda e: e.customer.tier == "gold")  # no such field


async def main() -> None:
    ids = await orchestrator.emit("new_ticket", {"priority": "high", "id": 101, "team": "billing"})
    print(f"high-priority ticket started {len(ids)} runs")
    ids = await orchestrator.emit("new_ticket", priority="low", id=102, team="sales")
    print(f"low-priority ticket started {len(ids)} run (audit only)")
    print(f"support said: {support_workflow.get_state().results['Triage']}")
    await orchestrator.emit("ticket_closed", {"id": 101})
    print(f"unhandled events: {dict(orchestrator.unhandled_events)}")
    for line in problems:
        print(f"  reported {line}")

    async with orchestrator.serving(port=None) as host:
        (run_id, _) = await orchestrator.emit("new_ticket", priority="high", id=103, team="ops")
        print(f"while serving, emit returned at once: {run_id[:8]}... is {(await host.run_status(run_id))['status']}")
        with anyio.fail_after(5):
            while (status := await host.run_status(run_id))["status"] != "completed":
                await anyio.sleep(0.01)
        print(f"then: {status['status']}, output {status['output']!r}")


anyio.run(main)
