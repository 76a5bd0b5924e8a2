"""Seed §7.1: cron schedules, DST-correct fire times, and a schedule firing while served.

Prints the next fire times of the seed's two schedules (UTC by default, or in a zone), shows
the spring-forward and fall-back nights in Berlin, then serves a schedule that fires every
second for about two seconds. Needs pyagent-cron.
"""

from __future__ import annotations

import datetime as dt

import anyio

from pyagent.orchestrator import Orchestrator, Task, Workflow

daily_report = Workflow(name="daily_report", steps=[Task(name="Report", agent=lambda x: "report sent")])
weekly_summary = Workflow(name="weekly_summary", steps=[Task(name="Summary", agent=lambda x: "summary sent")])
heartbeat = Workflow(name="heartbeat", steps=[Task(name="Beat", agent=lambda x: "alive")])

orchestrator = Orchestrator()

orchestrator.schedule(
    daily_report,
    cron="0 9 * * MON-FRI"  # 9 AM weekdays
)

orchestrator.schedule(
    weekly_summary,
    cron="0 18 * * FRI",  # 6 PM Friday
    timezone="Europe/Berlin",
)


def show(schedule: object, after: str, n: int) -> None:
    start = dt.datetime.fromisoformat(after)
    times = schedule.next_runs(n, after=start)  # type: ignore[attr-defined]
    print(f"  {schedule.name}: " + ", ".join(t.strftime("%a %d %b %H:%M %Z") for t in times))  # type: ignore[attr-defined]


print("next fire times:")
for s in orchestrator.triggers:
    show(s, "2026-03-02T00:00:00+00:00", 3)

# Daylight saving in Berlin: 02:30 does not exist on 29 March and happens twice on 25 October.
night = Orchestrator().schedule(heartbeat, cron="30 2 * * *", timezone="Europe/Berlin", name="night")
print("a 02:30 schedule in Berlin around the DST changes:")
show(night, "2026-03-27T12:00:00+00:00", 3)   # 28th 02:30 CET, 29th 03:00 CEST (end of the gap), 30th
show(night, "2026-10-23T12:00:00+00:00", 3)   # 24th, 25th once (02:30 CEST only), 26th 02:30 CET

every_second = orchestrator.schedule(heartbeat, cron="* * * * * *", name="heartbeat")


async def main() -> None:
    async with orchestrator.serving(port=None):
        with anyio.fail_after(10):
            while len(orchestrator.get_history(workflow="heartbeat")) < 2:
                await anyio.sleep(0.05)
    runs = sorted(r.run_id for r in orchestrator.get_history(workflow="heartbeat"))
    print(f"served: {len(runs)} heartbeat runs, e.g. {runs[0]} (run id = schedule name @ tick in UTC)")
    print(f"last fired: {every_second.last_fired}")


anyio.run(main)
