"""The schedules page, in process: ticks a schedule recorded on a manual clock, read back live
(with the schedule: next fire times in its zone and in UTC, pause and resume) and read-only
(from the store alone). The same page in a real browser against ``pyagent serve`` over SQLite,
on the real clock, is in test_serve.py; here the store is the kernel's memory store, whose
calls finish before the manual clock moves on (SQLite's run on a thread of their own, so the
clock would race past them).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyagent_dashboard import create_app
from pyagent_dashboard.schedules import scheduled_at

from pyagent.orchestrator import Orchestrator, Task, Workflow

pytestmark = pytest.mark.anyio
HTML = {"accept": "text/html"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.fixture
def cron(runtime: Any, clock: Any) -> Any:
    pytest.importorskip("pyagent_cron", reason="schedules are pyagent-cron's")
    return clock


async def record_ticks(clock: Any, url: str) -> tuple[Orchestrator, Any]:
    """A daily 09:00 Berlin schedule served for three days on the manual clock, paused on the third."""
    clock.set(at("2026-03-26T12:00:00"))
    orch = Orchestrator(store=url)
    report = Workflow(name="report", steps=[Task(name="write", agent=lambda x: "report")])
    schedule = orch.schedule(report, cron="0 9 * * *", timezone="Europe/Berlin", name="morning")
    async with orch.serving(port=None):
        await clock.run_until(at("2026-03-28T12:00:00"))  # fires on the 27th and the 28th
        schedule.pause()
        await clock.run_until(at("2026-03-29T12:00:00"))  # the 29th is skipped
    return orch, schedule


def sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="schedule" data-schedule="([^"]+)"(.*?)</section>\s*(?=<section|</section>)',
                           html, re.S))


async def test_read_only_the_page_shows_what_the_store_recorded(cron: Any, tmp_path: Path) -> None:
    url = f"memory://{tmp_path.name}"
    await record_ticks(cron, url)
    app = create_app(url)  # read-only: no orchestrator, no schedules of its own
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     headers=HTML) as client:
            page = await client.get("/schedules")
            assert page.status_code == 200
            html = page.text
            assert "Schedules live in the process that serves them" in html
            morning = sections(html)["morning"]
            assert 'data-live-schedule="false"' in morning and "data-action" not in morning  # no buttons
            assert "2 fired, 1 skipped" in morning
            ticks = re.findall(r'data-tick="([^"]+)" data-status="([^"]+)"', morning)
            assert ticks == [("morning@2026-03-29T07:00:00Z", "skipped"),  # 09:00 CEST: the clocks changed
                             ("morning@2026-03-28T08:00:00Z", "completed"),
                             ("morning@2026-03-27T08:00:00Z", "completed")]
            assert "the schedule was paused" in morning
            assert 'data-last-fired="2026-03-28T08:00:00+00:00"' in morning
            refused = await client.post("/schedules/pause", data={"schedule": "morning", "csrf": "x"})
            assert refused.status_code == 403 and "read-only" in refused.text
    finally:
        await app.state.dashboard.source.close()


async def test_with_the_orchestrator_it_shows_next_fires_in_both_zones_and_pauses(cron: Any, tmp_path: Path) -> None:
    orch, schedule = await record_ticks(cron, f"memory://{tmp_path.name}")
    schedule.resume()
    app = create_app(orchestrator=orch, read_only=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     headers=HTML) as client:
            html = (await client.get("/schedules")).text
            morning = sections(html)["morning"]
            assert 'data-live-schedule="true"' in morning and 'data-paused="false"' in morning
            # The clock says 2026-03-29 12:00 UTC: the next fires are 09:00 CEST = 07:00 UTC.
            nexts = re.findall(r'<tr data-next="([^"]+)"><td>([^<]+)</td><td>([^<]+)</td>', morning)
            assert nexts[:2] == [
                ("2026-03-30T09:00:00+02:00", "2026-03-30 09:00:00 CEST", "2026-03-30 07:00:00 UTC"),
                ("2026-03-31T09:00:00+02:00", "2026-03-31 09:00:00 CEST", "2026-03-31 07:00:00 UTC")]
            assert len(nexts) == 5
            assert "Europe/Berlin" in morning and "0 9 * * *" in morning and "misfire=run_once" in morning
            csrf = re.search(r'name="csrf" value="([^"]+)"', html)
            assert csrf is not None
            assert client.cookies["pyagent_dashboard_csrf"] == csrf[1]  # the page set it
            no_csrf = await client.post("/schedules/pause", data={"schedule": "morning"})
            assert no_csrf.status_code == 403 and not schedule.paused
            paused = await client.post("/schedules/pause", data={"schedule": "morning", "csrf": csrf[1]})
            assert paused.status_code == 303 and schedule.paused
            html = (await client.get("/schedules")).text
            assert 'data-paused="true"' in sections(html)["morning"] and "Paused morning" in html
            unknown = await client.post("/schedules/resume", data={"schedule": "evening", "csrf": csrf[1]})
            assert unknown.status_code == 404 and schedule.paused
            resumed = await client.post("/schedules/resume", data={"schedule": "morning", "csrf": csrf[1]})
            assert resumed.status_code == 303 and not schedule.paused
    finally:
        await app.state.dashboard.source.close()


def test_fire_ids_are_read_and_other_run_ids_are_not() -> None:
    assert scheduled_at("morning@2026-03-29T07:00:00Z") == ("morning", at("2026-03-29T07:00:00"))
    for other in ("ledger-1", "a@b", "x@2026-03-29T07:00:00", "@2026-03-29T07:00:00Z"):
        assert scheduled_at(other) is None
