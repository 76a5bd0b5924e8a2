"""Seed §7.3 and dependency graphs: tasks start as soon as their dependencies finish."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from pyagent.orchestrator import ConditionalTask, Task, Workflow


@dataclass
class Analysis:
    score: float
    summary: str


async def analyze(ticket: str) -> Analysis:
    await anyio.sleep(0.01)
    return Analysis(score=0.9 if "refund" in ticket else 0.5, summary=ticket.upper())


# §7.3 as written, with agents added to the tasks
workflow = Workflow(
    name="Conditional Flow",
    steps=[
        Task(name="Analyze", agent=analyze),
        ConditionalTask(
            condition=lambda ctx: ctx.result.score > 0.8,
            if_true=Task(name="Approve", agent=lambda a: f"approved: {a.summary}"),
            if_false=Task(name="Escalate", agent=lambda a: f"escalated: {a.summary}"),
        ),
    ],
)

# A graph: Fetch feeds Clean and Stats (which run side by side); Report waits for both.
fetch = Task(name="Fetch", agent=lambda src: [3, 1, 4, 1, 5, 9, 2, 6])
clean = Task(name="Clean", agent=lambda xs: sorted(set(xs)), dependencies=[fetch])
stats = Task(name="Stats", agent=lambda xs: {"n": len(xs), "max": max(xs)}, dependencies=["Fetch"])
report = Task(name="Report", agent=lambda d: f"{d['Stats']['n']} values, {len(d['Clean'])} unique, max {d['Stats']['max']}",
              dependencies=[clean, stats])
etl = Workflow(name="ETL", steps=[fetch, clean, stats, report])


async def main() -> None:
    for ticket in ("refund please", "my app crashes"):
        result = await workflow.run(ticket)
        taken = [n for n, t in result.tasks.items() if t.status == "completed" and n != "Analyze"]
        skipped = [n for n, t in result.tasks.items() if t.status == "skipped"]
        print(f"{ticket!r}: ran {taken}, skipped {skipped} -> {result.output}")
    result = await etl.run("sensor-7")
    print(f"ETL ({etl.pattern_name}): {result.output}")


if __name__ == "__main__":
    anyio.run(main)
