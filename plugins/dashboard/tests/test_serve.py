"""The dashboard ``pyagent serve`` mounts at /ui, driven in chromium against a real serve process.

One ``pyagent serve tests/served.py --port 0 --storage sqlite:///... --token ...`` process on
127.0.0.1 serves cron schedules (one every 2 seconds, on the real clock) and webhooks; the
dashboard is on the same server, at /ui. Waits are bounded; screenshots go to tmp_path.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import TOKEN, ServeProcess, sign_in

pytestmark = pytest.mark.slow


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def http(url: str, *, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**({"Content-Type": "application/json"} if data else {}),
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until_status(served: ServeProcess, run_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        code, text = http(f"{served.base}/runs/{run_id}")
        if code == 200 and json.loads(text)["status"] == want:
            return dict(json.loads(text))
        assert time.monotonic() < deadline, f"run {run_id} did not become {want}: {text}"
        time.sleep(0.1)


def test_the_dashboard_is_at_ui_on_the_serving_port_behind_the_token(served: ServeProcess, browser: Any,
                                                                     tmp_path: Path) -> None:
    assert served.ui.startswith("http://127.0.0.1:") and served.ui == served.base + "/ui"
    page = browser.new_page()
    page.goto(served.ui)  # /ui -> /ui/ -> /ui/runs -> the login form
    assert "/ui/login" in page.url and page.locator("input[name=token]").is_visible()
    assert page.locator("table.runs").count() == 0
    page.fill("input[name=token]", "wrong")
    page.click(".login button[type=submit]")
    assert "not the dashboard's token" in page.locator("#login-problem").inner_text()
    page.fill("input[name=token]", TOKEN)
    page.click(".login button[type=submit]")
    page.wait_for_url(served.ui + "/runs")
    assert page.locator("header.top .pill", has_text="read-only").count() == 0  # it acts: not read-only
    assert [a.inner_text() for a in page.locator("header.top nav a").all()] == ["Runs", "Schedules", "Metrics"]
    # Without the token nothing is shown, to a browser or to a script; with it as a bearer, it is.
    assert http(served.ui + "/runs")[0] == 401
    assert http(served.ui + "/schedules", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    # The webhooks on the same server keep their own rules: no dashboard token needed.
    assert http(served.base + "/healthz")[0] == 200


def test_a_run_started_by_a_webhook_shows_its_trigger(served: ServeProcess, browser: Any, tmp_path: Path) -> None:
    code, text = http(served.base + "/hooks/intake", body={"order": 17})
    assert code == 202
    run_id = json.loads(text)["run_id"]
    until_status(served, run_id, "completed")
    page = browser.new_page()
    sign_in(page, served.ui)
    row = page.locator(f"tr[data-run='{run_id}']")
    expect(row).to_have_count(1, timeout=15_000)
    trigger = row.locator("td[data-trigger]")
    assert trigger.get_attribute("data-trigger") == "webhook" and trigger.get_attribute("title") == "/hooks/intake"
    # The schedule's runs say cron, with the schedule's name.
    cron_row = page.locator("tr[data-run^='heartbeat@']").first
    expect(cron_row).to_have_count(1, timeout=15_000)
    assert cron_row.locator("td[data-trigger]").get_attribute("data-trigger") == "cron"
    shot(page, tmp_path, "serve-runs")
    row.locator("a").click()
    page.wait_for_url(f"{served.ui}/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "completed"
    assert page.locator("#run-trigger").inner_text() == "webhook (/hooks/intake)"


def ticks(page: Any) -> list[tuple[str, str, str]]:
    """The heartbeat's recent ticks shown: (fire id, status, reason)."""
    section = page.locator("section.schedule[data-schedule=heartbeat]")
    return [(t.get_attribute("data-tick"), t.get_attribute("data-status"),
             t.locator("[data-reason]").inner_text() if t.locator("[data-reason]").count() else "")
            for t in section.locator("tr[data-tick]").all()]


def due(fire_id: str) -> str:
    return fire_id.split("@", 1)[1]


def _utc(iso: str) -> str:
    """An ISO time with an offset as a fire id's instant (``2026-03-02T08:00:00Z``)."""
    import datetime as dt

    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_paused_schedule_fires_no_more_and_resumes(served: ServeProcess, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, served.ui, path="/schedules")
    section = page.locator("section.schedule[data-schedule=heartbeat]")
    assert section.get_attribute("data-paused") == "false"
    assert section.locator("dd", has_text="Europe/Berlin").count() == 1
    # Next fire times in the schedule's zone and in UTC, two seconds apart.
    nexts = section.locator("tr[data-next]")
    assert nexts.count() == 5
    first = nexts.first.locator("td")
    assert re.search(r" CE(S)?T$", first.nth(0).inner_text()) and first.nth(1).inner_text().endswith(" UTC")
    report = page.locator("section.schedule[data-schedule='weekday report']")
    assert report.locator("dd", has_text="America/New_York").count() == 1
    assert re.search(r" 09:00:00 E[DS]T$", report.locator("tr[data-next] td").first.inner_text())
    # It fires on the real clock: a completed tick shows (the page follows live).
    expect(section.locator("tr[data-tick][data-status=completed]").first).to_be_visible(timeout=20_000)
    shot(page, tmp_path, "schedules")

    section.locator("button[data-action=pause]").click()
    page.wait_for_url(served.ui + "/schedules")
    section = page.locator("section.schedule[data-schedule=heartbeat]")
    assert section.get_attribute("data-paused") == "true"
    assert "Paused heartbeat" in page.locator("#notice").inner_text()
    # A tick being fired as the pause landed may still complete; from the first tick skipped
    # for the pause on (ticks are handled in order), nothing fires. Wait (bounded) for it and
    # for two more ticks.
    deadline = time.monotonic() + 20
    while True:
        skipped = [t for t, s, reason in ticks(page) if s == "skipped" and reason == "the schedule was paused"]
        if skipped and len([t for t in ticks(page) if due(t[0]) > due(min(skipped))]) >= 2:
            break
        assert time.monotonic() < deadline, f"no paused ticks came: {ticks(page)}"
        time.sleep(0.5)
        page.reload()
    first_skipped = min(skipped)
    last = max(t for t, s, _ in ticks(page) if s != "skipped")
    assert due(last) < due(first_skipped)
    after = [t for t in ticks(page) if due(t[0]) > due(first_skipped)]
    assert all(s == "skipped" and reason == "the schedule was paused" for _, s, reason in after), after
    section = page.locator("section.schedule[data-schedule=heartbeat]")
    last_fired = section.locator("[data-last-fired]").get_attribute("data-last-fired")
    assert last_fired and due(last) == _utc(last_fired)
    assert "skipped" in section.locator("[data-counts]").inner_text()
    shot(page, tmp_path, "schedule-paused")
    # And the store agrees: no heartbeat run after the pause on the runs page.
    page.goto(served.ui + "/runs?workflow=tick&limit=200")
    fired = [r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()
             if r.get_attribute("data-status") != "skipped"]
    assert fired and max(due(f) for f in fired) == due(last)

    page.goto(served.ui + "/schedules")
    page.locator("section.schedule[data-schedule=heartbeat] button[data-action=resume]").click()
    page.wait_for_url(served.ui + "/schedules")
    assert page.locator("section.schedule[data-schedule=heartbeat]").get_attribute("data-paused") == "false"
    deadline = time.monotonic() + 20
    newest_skipped = max(t for t, s, _ in ticks(page) if s == "skipped")
    while not [t for t in ticks(page) if due(t[0]) > due(newest_skipped) and t[1] != "skipped"]:
        assert time.monotonic() < deadline, f"the resumed schedule did not fire: {ticks(page)}"
        time.sleep(0.5)
        page.reload()


def test_a_failed_run_is_resumed_from_its_page_inside_serve(served: ServeProcess, browser: Any, tmp_path: Path) -> None:
    code, text = http(served.base + "/hooks/ledger", body={"invoice": 42})
    assert code == 202
    run_id = json.loads(text)["run_id"]
    failed = until_status(served, run_id, "failed")
    assert "ledger service is down" in failed["error"]
    page = browser.new_page()
    sign_in(page, served.ui, path=f"/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "failed"
    assert "ledger service is down" in page.locator("#run-error").inner_text()
    shot(page, tmp_path, "serve-failed-run")
    served.ledger_up.touch()  # the ledger is back
    page.click("#resume-run")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    assert page.locator("#run-progress").inner_text() == "3/3 done"
    assert page.locator("svg.timeline g.attempt[data-task=prepare]").get_attribute("data-outcome") == "reused"
    assert "confirmed: posted entries for invoice 42" in page.locator("tr[data-task=confirm]").inner_text()
    assert page.locator("#run-trigger").inner_text() == "webhook (/hooks/ledger)"  # how it started, still
    shot(page, tmp_path, "serve-resumed-run")
    # The serving process ran the resumed run, and its status API says so too.
    assert until_status(served, run_id, "completed")["tasks_completed"] == 3
    page.goto(served.ui + "/runs")
    row = page.locator(f"tr[data-run='{run_id}'] td[data-trigger]")
    assert row.get_attribute("data-trigger") == "webhook" and "resumed" in row.inner_text()
    shot(page, tmp_path, "serve-runs-later")


def test_a_run_going_on_in_serve_is_cancelled_from_its_page(served: ServeProcess, browser: Any) -> None:
    code, text = http(served.base + "/hooks/crunch", body={"rows": 3})
    assert code == 202
    run_id = json.loads(text)["run_id"]
    until_status(served, run_id, "running")
    page = browser.new_page()
    page.on("dialog", lambda d: d.accept())
    sign_in(page, served.ui, path=f"/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("running", timeout=15_000)
    expect(page.locator("#run-progress")).to_have_text("1/2 done", timeout=15_000)  # crunch goes on
    page.click("#cancel-run")
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=20_000)
    assert "cancelled from the dashboard" in page.locator("#run-error").inner_text()
    assert until_status(served, run_id, "cancelled")["tasks_completed"] == 1
