"""Schedules served on the manual clock: months of ticks, DST, misfires, overlaps, jitter, restarts."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, PluginNotInstalledError
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.testing import CountingAgents

pytestmark = pytest.mark.anyio
UTC = dt.UTC


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def job(agents: CountingAgents, name: str = "report") -> Workflow:
    return Workflow(name=name, steps=[Task(name="Run", agent=agents["Run"])])


def runs(orch: Orchestrator, status: str | None = None) -> list[str]:
    return sorted(r.run_id for r in orch.get_history(status=status))


async def test_months_of_ticks_in_milliseconds(cron_runtime: Any, clock: Any) -> None:
    clock.set(at("2026-01-01T00:00:00"))
    orch, agents = Orchestrator(), CountingAgents()
    schedule = orch.schedule(job(agents), cron="0 9 * * MON-FRI", timezone="Europe/Berlin")
    started = time.perf_counter()
    async with orch.serving(port=None):
        await clock.run_until(at("2026-04-01T00:00:00"))
    assert time.perf_counter() - started < 5
    weekdays = [d for d in (dt.date(2026, 1, 1) + dt.timedelta(n) for n in range(90)) if d.weekday() < 5]
    assert agents.calls["Run"] == len(weekdays) == 64
    ids = runs(orch, "completed")
    assert ids[0] == "report@2026-01-01T08:00:00Z"  # 09:00 CET
    assert "report@2026-03-31T07:00:00Z" in ids  # 09:00 CEST after the switch
    assert schedule.last_fired == dt.datetime(2026, 3, 31, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))


@pytest.mark.parametrize(("zone", "day", "cron", "fire"), [
    ("Europe/Berlin", "2026-03-29", "30 2 * * *", "2026-03-29T01:00:00Z"),  # 02:30 missing: 03:00 CEST
    ("Europe/Berlin", "2026-10-25", "30 2 * * *", "2026-10-25T00:30:00Z"),  # 02:30 twice: CEST only
    ("America/New_York", "2026-03-08", "30 2 * * *", "2026-03-08T07:00:00Z"),  # 02:30 missing: 03:00 EDT
    ("America/New_York", "2026-11-01", "30 1 * * *", "2026-11-01T05:30:00Z"),  # 01:30 twice: EDT only
])
async def test_dst_days_fire_once_when_served(cron_runtime: Any, clock: Any, zone: str, day: str, cron: str,
                                              fire: str) -> None:
    orch, agents = Orchestrator(), CountingAgents()
    clock.set(at(f"{day}T00:00:00") - 86400)
    orch.schedule(job(agents), cron=cron, timezone=zone)
    async with orch.serving(port=None):
        await clock.run_until(at(f"{day}T00:00:00") + 2 * 86400)
    assert [r for r in runs(orch) if r.startswith(f"report@{day}")] == [f"report@{fire}"]
    assert agents.calls["Run"] == 3  # the day before, the day, the day after: once each


async def test_ticks_missed_while_not_serving_follow_misfire(cron_runtime: Any, clock: Any, store_url: str) -> None:
    for misfire, ran in (("skip", []), ("run_once", ["12:00"]), ("all", ["10:00", "11:00", "12:00"])):
        url = f"{store_url}-{misfire}"
        clock.now = at("2026-05-01T08:30:00")
        orch, agents = Orchestrator(store=url), CountingAgents()
        orch.schedule(job(agents), cron="0 * * * *", misfire=misfire)
        async with orch.serving(port=None):
            await clock.run_until(at("2026-05-01T09:30:00"))  # 09:00 fires
        clock.set(at("2026-05-01T12:30:00"))  # down over 10:00, 11:00, 12:00
        async with orch.serving(port=None):
            await clock.run_until(at("2026-05-01T12:40:00"))
            await anyio.wait_all_tasks_blocked()
        hist = {r.run_id.split("T")[1][:5]: r.status.value for r in await orch.aget_history()}
        missed = {t: hist[t] for t in ("10:00", "11:00", "12:00")}  # every missed tick is recorded
        assert [t for t, s in missed.items() if s == "completed"] == ran, misfire
        assert all(s == "skipped" for t, s in missed.items() if t not in ran)
        assert hist["09:00"] == "completed" and agents.calls["Run"] == 1 + len(ran)


async def test_misfire_all_runs_at_most_max_catch_up_oldest_first(cron_runtime: Any, clock: Any, store_url: str) -> None:
    clock.now = at("2026-05-01T00:00:30")
    orch, agents = Orchestrator(store=store_url), CountingAgents()
    orch.schedule(job(agents), cron="* * * * *", misfire="all", max_catch_up=3)
    async with orch.serving(port=None):
        await clock.run_until(at("2026-05-01T00:01:10"))
    clock.set(at("2026-05-01T00:06:30"))  # 00:02 .. 00:06 missed
    async with orch.serving(port=None):
        await anyio.wait_all_tasks_blocked()
    hist = {r.run_id[-9:-4]: r.status.value for r in await orch.aget_history()}  # "HH:MM" of the tick
    assert hist == {"00:01": "completed", "00:02": "completed", "00:03": "completed", "00:04": "completed",
                    "00:05": "skipped", "00:06": "skipped"}


async def test_a_restarted_schedule_never_fires_a_tick_twice(cron_runtime: Any, clock: Any, store_url: str) -> None:
    clock.now = at("2026-05-01T08:59:00")
    agents = CountingAgents()
    for _ in range(3):  # three processes in a row on the same store, each up over the same tick
        orch = Orchestrator(store=store_url)
        orch.schedule(job(agents), cron="0 9 * * *")
        async with orch.serving(port=None):
            await clock.run_until(at("2026-05-01T09:00:00"))
        clock.now = at("2026-05-01T08:59:30")  # the clock is set back: the tick comes again
    assert agents.calls == {"Run": 1}


async def test_a_late_scheduler_applies_misfire_while_serving(cron_runtime: Any, clock: Any) -> None:
    clock.now = at("2026-05-01T00:00:00")
    orch, agents = Orchestrator(), CountingAgents()
    orch.schedule(job(agents), cron="*/10 * * * *", misfire="run_once")
    async with orch.serving(port=None):
        await anyio.wait_all_tasks_blocked()
        clock.advance(3600)  # a jump (a suspended machine): 6 ticks are due at once
        await clock.run_for(0)
    assert runs(orch, "completed") == ["report@2026-05-01T01:00:00Z"]
    assert len(runs(orch, "skipped")) == 0  # no store, no history row; the events said it (next test)


async def test_an_overlapping_tick_is_skipped_and_announced(cron_runtime: Any, clock: Any, store_url: str) -> None:
    events: list[Any] = []
    gate = anyio.Event()

    async def slow(x: Any) -> str:
        await gate.wait()
        return "done"

    clock.now = at("2026-05-01T00:00:30")
    orch = Orchestrator(store=store_url, monitors=[events.append])
    orch.schedule(Workflow(name="slow", steps=[Task(name="S", agent=slow)]), cron="* * * * *")
    async with orch.serving(port=None):
        await clock.run_until(at("2026-05-01T00:02:10"))  # 00:01 runs and holds; 00:02 would overlap
        gate.set()
        await clock.run_until(at("2026-05-01T00:03:10"))
    skipped = [e for e in events if e.kind == "trigger.skipped"]
    assert [e.run_id for e in skipped] == ["slow@2026-05-01T00:02:00Z"]
    assert "overlap" in skipped[0].data["reason"] and skipped[0].data["scheduled"] == "2026-05-01T00:02:00Z"
    hist = {r.run_id[-9:-4]: r.status.value for r in await orch.aget_history()}  # "HH:MM" of the tick
    assert hist == {"00:01": "completed", "00:02": "skipped", "00:03": "completed"}


async def test_jitter_delays_the_fire_but_not_the_run_id(cron_runtime: Any, clock: Any) -> None:
    import random

    random.seed(4)
    started: list[float] = []
    clock.now = at("2026-05-01T00:00:00")
    orch = Orchestrator(monitors=[lambda e: e.kind == "workflow.started" and started.append(clock.time())])
    orch.schedule(job(CountingAgents()), cron="0 * * * *", jitter=120)
    async with orch.serving(port=None):
        await clock.run_until(at("2026-05-01T03:10:00"))
    assert runs(orch) == [f"report@2026-05-01T0{h}:00:00Z" for h in (1, 2, 3)]
    delays = [s - at(f"2026-05-01T0{h}:00:00") for s, h in zip(started, (1, 2, 3), strict=True)]
    assert all(0 <= d <= 120 for d in delays) and len(set(delays)) == 3


async def test_pause_resume_remove_and_next_runs(cron_runtime: Any, clock: Any) -> None:
    clock.now = at("2026-05-01T00:00:00")
    orch, agents = Orchestrator(), CountingAgents()
    schedule = orch.schedule(job(agents), cron="0 * * * *", timezone="America/New_York")
    assert schedule.next_runs(2) == [dt.datetime(2026, 4, 30, 21, tzinfo=schedule.timezone),
                                     dt.datetime(2026, 4, 30, 22, tzinfo=schedule.timezone)]
    assert schedule.next_runs(1)[0].utcoffset() == dt.timedelta(hours=-4)
    async with orch.serving(port=None):
        await clock.run_until(at("2026-05-01T01:30:00"))
        schedule.pause()
        await clock.run_until(at("2026-05-01T03:30:00"))
        schedule.resume()
        await clock.run_until(at("2026-05-01T04:30:00"))
        schedule.remove()
        await clock.run_until(at("2026-05-01T08:30:00"))
    assert runs(orch) == ["report@2026-05-01T01:00:00Z", "report@2026-05-01T04:00:00Z"]
    assert schedule not in orch.triggers


def test_bad_schedules_are_refused_when_made(cron_runtime: Any) -> None:
    orch = Orchestrator()
    wf = job(CountingAgents())
    with pytest.raises(ConfigurationError, match="the hour field '24'"):
        orch.schedule(wf, cron="0 24 * * *")
    with pytest.raises(ConfigurationError, match="unknown timezone"):
        orch.schedule(wf, cron="0 9 * * *", timezone="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="misfire='sometimes'"):
        orch.schedule(wf, cron="0 9 * * *", misfire="sometimes")
    with pytest.raises(ConfigurationError, match="jitter"):
        orch.schedule(wf, cron="0 9 * * *", jitter=-1)
    orch.schedule(wf, cron="0 9 * * *")
    with pytest.raises(ConfigurationError, match="a schedule named 'report' exists"):
        orch.schedule(wf, cron="0 18 * * *")
    orch.schedule(wf, cron="0 18 * * *", name="report-evening")


def test_without_the_plugin_the_error_names_it(bare_runtime: Any) -> None:
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-cron"):
        Orchestrator().schedule(job(CountingAgents()), cron="0 9 * * *")
