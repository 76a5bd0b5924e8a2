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
    assert [a.inner_text() for a in page.locator("header.top nav a").all()] == ["Runs", "Schedules", "Approvals", "Metrics"]
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


# -- approvals: questions runs ask, answered in the browser ----------------------------------


def in_thread(fn: Any) -> Any:
    """``anyio.run(fn)`` on a thread of its own (Playwright's sync API holds this thread's loop)."""
    import threading

    import anyio

    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["value"] = anyio.run(fn)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box["value"]


def questions_of(served: ServeProcess, run_id: str) -> list[Any]:
    """Every question of run ``run_id`` as the store keeps it (answered ones too)."""
    from pyagent.plugin import close_store, list_questions, open_store

    async def read() -> list[Any]:
        store = await open_store(served.store)
        try:
            return await list_questions(store, run_id=run_id, status=None)
        finally:
            await close_store(store)

    return list(in_thread(read))


def run_record(served: ServeProcess, run_id: str) -> Any:
    from pyagent.plugin import close_store, open_store, read_run

    async def read() -> Any:
        store = await open_store(served.store)
        try:
            return await read_run(store, run_id)
        finally:
            await close_store(store)

    return in_thread(read)


def start_refund(served: ServeProcess, order: str, amount: int) -> str:
    code, text = http(served.base + "/hooks/refund", body={"order": order, "amount": amount, "customer": "ada"})
    assert code == 202, text
    run_id = str(json.loads(text)["run_id"])
    waiting = until_status(served, run_id, "waiting")
    assert [q["task"] for q in waiting["interrupts"]] == ["approve"]
    return run_id


def test_a_waiting_run_is_answered_through_the_form_and_completes(served: ServeProcess, browser: Any,
                                                                   tmp_path: Path) -> None:
    run_id = start_refund(served, "A-1001", 120)
    page = browser.new_page()
    sign_in(page, served.ui, path=f"/runs/{run_id}")
    # The waiting run's page says what it waits on, and links to the Approvals page.
    assert page.locator("#run-status").inner_text() == "waiting"
    waiting = page.locator("#waiting-questions")
    assert "Refund order A-1001 ($120 claimed)?" in waiting.inner_text()
    assert page.locator("svg.timeline g.attempt[data-task=approve]").get_attribute("data-outcome") == "waiting"
    waiting.locator("a.answer-link").click()
    page.wait_for_url(f"{served.ui}/approvals?run={run_id}*")
    (question,) = questions_of(served, run_id)
    card = page.locator(f"section.question[data-question='{question.id}']")
    assert card.locator(".question-text").inner_text() == "Refund order A-1001 ($120 claimed)?"
    assert card.locator("[data-task]").inner_text() == "approve"
    assert "then the task fails" in card.locator("[data-deadline]").inner_text()
    # The form follows the schema: yes/no, a number with its bounds, a select, lines, optional text.
    form = card.locator("form[data-answer-form]")
    assert form.locator("input[type=radio][name='answer.approved']").count() == 2  # required: no "no answer"
    amount = form.locator("input[name='answer.amount']")
    assert amount.get_attribute("type") == "number" and amount.get_attribute("max") == "500"
    assert [o.inner_text() for o in form.locator("select[name='answer.reason'] option").all()] == [
        "— choose —", "damaged", "late", "goodwill"]
    assert form.locator("[data-field='answer.tags']").get_attribute("data-kind") == "lines"
    assert form.locator("[data-field='answer.note']").get_attribute("data-kind") == "text"

    form.locator("input[name='answer.approved'][value=true]").check()
    amount.fill("120")
    form.locator("select[name='answer.reason']").select_option(label="damaged")
    form.locator("textarea[name='answer.tags']").fill("loyal customer\nsecond claim")
    form.locator("input[name=answered_by]").fill("Ada Lovelace")
    shot(page, tmp_path, "approvals")
    form.locator("button[data-submit]").click()
    page.wait_for_url(f"{served.ui}/approvals?*answered={question.id}*")
    notice = page.locator("#notice").inner_text()
    assert "as Ada Lovelace" in notice and '"amount": 120' in notice
    # The store has the answer and who gave it; the serving host was woken and the run completed.
    (answered,) = questions_of(served, run_id)
    assert answered.status == "answered" and answered.answered_by == "Ada Lovelace"
    assert answered.answer == {"approved": True, "amount": 120, "reason": "damaged",
                               "tags": ["loyal customer", "second claim"]}
    done = until_status(served, run_id, "completed")
    assert done["output"] == "refunded $120"
    record = run_record(served, run_id).record
    assert record.status.value == "completed" and record.tasks_completed == 3
    # The run's page follows: completed, nothing waits any more.
    page.goto(f"{served.ui}/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "completed"
    assert page.locator("#waiting-questions").count() == 0
    # The name is remembered for the next answer from this browser.
    cookie = {c["name"]: c for c in browser.cookies()}["pyagent_dashboard_name"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_a_schema_mismatch_is_shown_in_the_form_and_nothing_is_recorded(served: ServeProcess, browser: Any,
                                                                         tmp_path: Path) -> None:
    run_id = start_refund(served, "B-2002", 900)
    page = browser.new_page()
    sign_in(page, served.ui, path="/approvals")
    (question,) = questions_of(served, run_id)
    card = page.locator(f"section.question[data-question='{question.id}']")
    form = card.locator("form[data-answer-form]")
    form.locator("input[name='answer.approved'][value=true]").check()
    form.locator("input[name='answer.amount']").fill("900")  # over the schema's maximum of 500
    form.locator("input[name=answered_by]").fill("Mallory")  # and no reason chosen
    form.locator("button[data-submit]").click()
    card = page.locator(f"section.question[data-question='{question.id}']")
    # The kernel's refusal, by field, and the values given are kept in the form.
    expect(card.locator("[data-problem-for='answer.amount']")).to_have_text("must be <= 500")
    assert card.locator("[data-problem-for='answer.reason']").inner_text() == "is required"
    assert card.locator("input[name='answer.amount']").input_value() == "900"
    assert card.locator("input[name='answer.approved'][value=true]").is_checked()
    assert card.locator("input[name=answered_by]").input_value() == "Mallory"
    shot(page, tmp_path, "approvals-refused")
    (still,) = questions_of(served, run_id)
    assert still.status == "pending" and still.answered_by is None and still.answer is None
    assert until_status(served, run_id, "waiting")["status"] == "waiting"
    # A number that is not one is the form's own refusal; nothing is recorded either.
    form = card.locator("form[data-answer-form]")
    form.locator("select[name='answer.reason']").select_option(label="goodwill")
    form.locator("input[name='answer.amount']").fill("")
    form.locator("input[name=answered_by]").fill("")
    form.locator("button[data-submit]").click()
    card = page.locator(f"section.question[data-question='{question.id}']")
    expect(card.locator("[data-problem-for='answered_by']")).to_contain_text("give your name")
    assert questions_of(served, run_id)[0].status == "pending"
    # Answered right, it goes on (so the module's server ends with no run waiting).
    form = card.locator("form[data-answer-form]")
    form.locator("input[name='answer.amount']").fill("500")
    form.locator("input[name='answer.approved'][value=false]").check()
    form.locator("input[name=answered_by]").fill("Grace")
    form.locator("button[data-submit]").click()
    page.wait_for_url(f"{served.ui}/approvals?*answered={question.id}*")
    assert until_status(served, run_id, "completed")["output"] == "refund refused"
    assert questions_of(served, run_id)[0].answered_by == "Grace"


def test_an_answer_without_the_csrf_token_is_refused(served: ServeProcess, browser: Any) -> None:
    run_id = start_refund(served, "C-3003", 40)
    page = browser.new_page()
    sign_in(page, served.ui, path="/approvals")
    (question,) = questions_of(served, run_id)
    answer = {"answer.approved": "true", "answer.amount": "40", "answer.reason": "0", "answered_by": "Eve"}
    url = f"{served.ui}/approvals/{run_id}/{question.id}"
    # The browser's session cookie goes along (as it would from another site's form), the token does not.
    refused = page.request.post(url, form=answer)
    assert refused.status == 403 and "CSRF" in refused.text()
    forged = page.request.post(url, form={**answer, "csrf": "guessed"})
    assert forged.status == 403
    other_origin = page.request.post(url, form={**answer, "csrf": page.locator("input[name=csrf]").first.input_value()},
                                     headers={"origin": "https://evil.example"})
    assert other_origin.status == 403 and "another origin" in other_origin.text()
    (still,) = questions_of(served, run_id)
    assert still.status == "pending" and still.answered_by is None
    # With the page's token it is taken (and the run goes on).
    taken = page.request.post(url, form={**answer, "csrf": page.locator("input[name=csrf]").first.input_value()},
                              max_redirects=0)
    assert taken.status == 303
    assert until_status(served, run_id, "completed")["output"] == "refunded $40"
    assert questions_of(served, run_id)[0].answered_by == "Eve"


def test_read_only_it_shows_the_questions_without_forms_and_refuses_answers(served: ServeProcess, browser: Any,
                                                                            tmp_path: Path) -> None:
    from .conftest import CliServer

    run_id = start_refund(served, "D-4004", 75)
    (question,) = questions_of(served, run_id)
    reader = CliServer("--storage", served.store, "--port", "0", "--poll-interval", "0.2")
    try:
        page = browser.new_page()
        page.goto(reader.url + "/approvals")
        assert "Approvals" in [a.inner_text() for a in page.locator("header.top nav a").all()]
        card = page.locator(f"section.question[data-question='{question.id}']")
        assert card.locator(".question-text").inner_text() == "Refund order D-4004 ($75 claimed)?"
        assert card.locator("form").count() == 0 and page.locator("form[data-answer-form]").count() == 0
        assert "does not answer questions" in page.locator("#read-only-note").inner_text()
        shot(page, tmp_path, "approvals-read-only")
        csrf = {c["name"]: c["value"] for c in browser.cookies()}["pyagent_dashboard_csrf"]
        refused = page.request.post(f"{reader.url}/approvals/{run_id}/{question.id}",
                                    form={"csrf": csrf, "answer.approved": "true", "answer.amount": "75",
                                          "answer.reason": "1", "answered_by": "Trudy"})
        assert refused.status == 403 and "read-only" in refused.text()
        (still,) = questions_of(served, run_id)
        assert still.status == "pending" and still.answered_by is None
        # Answered in the serving process's dashboard meanwhile, the read-only page follows live.
        writer = browser.new_page()
        sign_in(writer, served.ui, path=f"/approvals?run={run_id}")
        form = writer.locator("form[data-answer-form]")
        form.locator("input[name='answer.approved'][value=true]").check()
        form.locator("input[name='answer.amount']").fill("75")
        form.locator("select[name='answer.reason']").select_option(label="late")
        form.locator("input[name=answered_by]").fill("Ada")
        form.locator("button[data-submit]").click()
        writer.wait_for_url(f"{served.ui}/approvals?*answered={question.id}*")
        expect(page.locator(f"section.question[data-question='{question.id}']")).to_have_count(0, timeout=15_000)
        assert until_status(served, run_id, "completed")["output"] == "refunded $75"
    finally:
        reader.stop()
