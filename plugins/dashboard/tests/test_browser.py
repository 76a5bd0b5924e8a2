"""The dashboard driven in a real browser (chromium through Playwright) against real servers.

The read-only server is ``pyagent dashboard`` itself, in its own process, over a SQLite store
holding runs recorded by real workflows. The actions (resume, cancel) are driven on a dashboard
given an orchestrator in this process. Screenshots go to each test's tmp_path.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.sync_api import expect
from pyagent_dashboard import create_app

from pyagent.orchestrator import TaskStatus

from .conftest import TOKEN, Recorded, sign_in

pytestmark = pytest.mark.slow


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_the_token_is_required(cli_server: Any, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(cli_server.url + "/runs")
    assert "/login" in page.url and page.locator("input[name=token]").is_visible()
    assert page.locator("table.runs").count() == 0
    shot(page, tmp_path, "login")
    page.fill("input[name=token]", "not the token")
    page.click(".login button[type=submit]")
    assert "not the dashboard's token" in page.locator("#login-problem").inner_text()
    assert page.locator("table.runs").count() == 0
    page.fill("input[name=token]", TOKEN)
    page.click(".login button[type=submit]")
    page.wait_for_url(cli_server.url + "/runs")
    assert page.locator("tr[data-run]").count() > 0
    cookies = {c["name"]: c for c in browser.cookies()}
    session = cookies["pyagent_dashboard_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and TOKEN not in session["value"]
    # Without the cookie, and without a bearer header, the API refuses too.
    anonymous = page.request.get(cli_server.url + "/runs/stream", headers={"cookie": ""})
    assert anonymous.status == 401
    with_bearer = browser.request.get(cli_server.url + "/runs", headers={"authorization": f"Bearer {TOKEN}"})
    assert with_bearer.status == 200


def test_runs_page_lists_filters_and_pages(cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url)
    rows = page.locator("tr[data-run]")
    total = len(recorded.ids) + 25
    assert rows.count() == min(total, 50)
    first = rows.first
    assert first.get_attribute("data-run") == recorded.ids["ledger"]  # the newest first
    shot(page, tmp_path, "runs")
    # 20 a page: page 2 follows on from page 1, with no run twice.
    page.select_option("select[name=limit]", "20")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*limit=20.*"))
    one = [r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()]
    assert len(one) == 20 and "runs 1–20" in page.locator(".pager").inner_text()
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(r".*offset=20.*"))
    two = [r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()]
    assert len(two) == total - 20 and not set(one) & set(two)
    assert page.locator("a[rel=next]").count() == 0
    page.click("a[rel=prev]")
    page.wait_for_url(re.compile(r".*limit=20(?!.*offset).*"))
    assert [r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()] == one
    # Filters: status, workflow, and a time window.
    page.goto(cli_server.url + "/runs")
    page.select_option("select[name=status]", "failed")
    page.click("#filters button[type=submit]")
    statuses = {r.get_attribute("data-status") for r in page.locator("tr[data-run]").all()}
    failed = {r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()}
    assert statuses == {"failed"}
    assert failed == {"bulk-00", "bulk-05", "bulk-10", "bulk-15", "bulk-20", recorded.ids["broken"],
                      recorded.ids["ledger"]}
    page.goto(cli_server.url + "/runs")
    page.fill("input[name=workflow]", "bulk")
    page.click("#filters button[type=submit]")
    assert {r.get_attribute("data-run") for r in page.locator("tr[data-run]").all()} == {f"bulk-{n:02d}" for n in range(25)}
    page.goto(cli_server.url + "/runs?until=2000-01-01")
    assert page.locator("tr[data-run]").count() == 0 and "No runs match" in page.locator("#live").inner_text()
    page.goto(cli_server.url + "/runs?status=lost")
    assert "status 'lost' is not a run status" in page.locator(".problem").inner_text()


def test_a_failed_runs_error_is_visible(cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url)
    page.click(f"tr[data-run='{recorded.ids['broken']}'] a")
    page.wait_for_url(f"{cli_server.url}/runs/{recorded.ids['broken']}")
    assert page.locator("#run-status").inner_text() == "failed"
    error = page.locator("#run-error").inner_text()
    assert "ValueError" in error and "the invoice total is negative: -12.50" in error
    task = page.locator("tr[data-task=check]")
    assert "failed" in task.inner_text() and "the invoice total is negative" in task.inner_text()
    # Read-only: no buttons, and a note instead.
    assert page.locator("#resume-run, #cancel-run").count() == 0
    assert "Read-only" in page.locator(".actions").inner_text()
    shot(page, tmp_path, "failed-run")


def test_a_failed_runs_traceback_is_shown_when_expanded(cli_server: Any, recorded: Recorded, browser: Any,
                                                        tmp_path: Path) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, cli_server.url, path=f"/runs/{recorded.ids['broken']}")
    traceback = page.locator("#run-traceback pre")
    expect(traceback).to_be_hidden()  # collapsed until asked for
    page.locator("#run-traceback summary").click()
    expect(traceback).to_be_visible()
    shown = traceback.inner_text()
    lines, first = inspect.getsourcelines(recorded.flows.check_invoice)
    line = first + next(i for i, text in enumerate(lines) if "raise ValueError" in text)
    assert f'flows.py", line {line}, in check_invoice' in shown  # the agent function's own line
    assert 'raise ValueError("the invoice total is negative: -12.50") from exc' in shown
    assert "<script>window.__xss = 'ran'</script>" in shown  # the cause's markup, as text
    assert page.evaluate("window.__xss") is None and not dialogs and page.locator("main img").count() == 0
    task = page.locator("tr[data-task=check] details.traceback")
    task.locator("summary").click()
    assert f"line {line}, in check_invoice" in task.locator("pre").inner_text()
    shot(page, tmp_path, "failed-run-traceback")


def test_a_retried_task_shows_its_two_attempts(cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url, path=f"/runs/{recorded.ids['flaky']}")
    bars = page.locator("svg.timeline g.attempt[data-task='fetch rates']")
    assert bars.count() == 2
    assert [bars.nth(i).get_attribute("data-outcome") for i in range(2)] == ["failed", "ok"]
    assert "the rates service timed out" in bars.nth(0).locator("title").text_content()
    row = page.locator("tr[data-task='fetch rates']")
    row.locator("details.attempts > summary").click()
    attempts = row.locator("details.attempts li")
    assert attempts.count() == 2
    assert "TimeoutError: the rates service timed out" in attempts.nth(0).inner_text()
    assert attempts.nth(1).inner_text().endswith(": ok")
    attempts.nth(0).locator("details.traceback summary").click()  # the failed attempt's own traceback
    assert ", in flaky_fetch" in attempts.nth(0).locator("details.traceback pre").inner_text()
    shot(page, tmp_path, "retried-run")
    # The fallback is drawn apart from a retry.
    page.goto(f"{cli_server.url}/runs/{recorded.ids['fallback']}")
    outcomes = [b.get_attribute("data-outcome") for b in page.locator("svg.timeline g.attempt").all()]
    assert outcomes == ["failed", "fallback"]


def test_an_output_holding_a_script_is_shown_as_text_and_secrets_are_masked(
        cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, cli_server.url, path=f"/runs/{recorded.ids['report']}")
    assert page.evaluate("window.__xss") is None and not dialogs
    write = page.locator("tr[data-task=write]")
    assert "<script>window.__xss = 'ran'</script>" in write.locator(".preview").inner_text()
    assert write.locator("script").count() == 0 and page.locator("main img").count() == 0
    write.locator("details.show-all summary").click()
    assert "lorem ipsum" * 1 in write.locator("details.show-all pre").inner_text()
    shown_input = page.locator("#run-input").inner_text()
    assert "sk-live-123456" not in page.content() and "hunter2" not in page.content()
    assert json.loads(shown_input) == {"topic": "AI", "api_key": "••••••••",
                                       "auth": {"password": "••••••••", "user": "ada"}}
    shot(page, tmp_path, "run-detail")


def test_graphs_are_drawn_from_the_definitions(cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url, path=f"/runs/{recorded.ids['pipeline']}")
    graph = page.locator("svg.graph").first
    nodes = {g.get_attribute("data-node"): g.get_attribute("data-status") for g in graph.locator("g.node").all()}
    assert nodes["fetch"] == nodes["clean"] == nodes["deep analysis"] == nodes["summary"] == "completed"
    assert nodes["quick look"] == "skipped" and "if:big enough?" in nodes
    assert graph.locator("g.node-nested").count() == 1
    assert "summary runs workflow summarise" in page.locator("main").inner_text()
    assert page.locator("#graph-note").count() == 0
    shot(page, tmp_path, "graph")
    page.goto(f"{cli_server.url}/runs/{recorded.ids['fanout']}")
    fan = page.locator("svg.graph")
    assert fan.locator("g.node-join").count() == 1 and fan.locator("g.node-task").count() == 3
    assert fan.locator("path.edge").count() == 7  # start to each branch, each to the join, the join to the end


def test_metrics_page(cli_server: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url, path="/metrics")
    bulk = page.locator("tr[data-workflow=bulk]")
    assert bulk.locator("[data-success]").inner_text() == "80%"
    assert page.locator("svg.chart polyline.series").count() >= 8
    assert page.locator("svg.chart g[data-rate]").count() >= 8
    shot(page, tmp_path, "metrics")


def test_the_runs_page_updates_live(cli_server: Any, recorded: Recorded, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url)
    assert page.locator("tr[data-run='live-1']").count() == 0

    async def one_more() -> None:
        await recorded.flows.orchestrator.run_workflow("bulk", 7, run_id="live-1")

    # Playwright's sync API keeps an event loop in this thread: record the run from another one.
    recorder = threading.Thread(target=anyio.run, args=(one_more,))
    recorder.start()
    recorder.join(30)
    page.wait_for_selector("tr[data-run='live-1']", timeout=15_000)
    assert page.locator("tr[data-run]").first.get_attribute("data-run") == "live-1"


def test_read_only_refuses_actions_and_csrf_less_posts(cli_server: Any, recorded: Recorded, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, cli_server.url)
    refused = page.request.post(f"{cli_server.url}/runs/{recorded.ids['ledger']}/resume", form={})
    assert refused.status == 403 and "read-only" in refused.text()


@pytest.fixture
def acting(recorded: Recorded, serve: Any) -> Any:
    """A dashboard that may act: this process's orchestrator, with a token."""
    app = create_app(orchestrator=recorded.flows.orchestrator, read_only=False, token=TOKEN, poll_interval=0.2)
    with serve(app) as server:
        yield server


def test_a_csrf_less_post_is_refused(acting: Any, recorded: Recorded, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, acting.url, path=f"/runs/{recorded.ids['broken']}")
    url = f"{acting.url}/runs/{recorded.ids['broken']}/resume"
    refused = page.request.post(url, form={})
    assert refused.status == 403 and "CSRF" in refused.text()
    forged = page.request.post(url, form={"csrf": "guessed"})
    assert forged.status == 403
    elsewhere = page.request.post(url, form={"csrf": "x"}, headers={"origin": "http://evil.example"})
    assert elsewhere.status == 403 and "another origin" in elsewhere.text()
    # The broken run is still failed: nothing was resumed.
    page.reload()
    assert page.locator("#run-status").inner_text() == "failed"


def test_a_failed_run_is_resumed_to_completion_from_its_page(
        acting: Any, recorded: Recorded, browser: Any, tmp_path: Path) -> None:
    run_id = recorded.ids["ledger"]
    page = browser.new_page()
    sign_in(page, acting.url, path=f"/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "failed"
    assert "ledger service is down" in page.locator("#run-error").inner_text()
    shot(page, tmp_path, "before-resume")
    recorded.flows.SWITCH["ledger_down"] = False
    page.click("#resume-run")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    assert page.locator("#run-progress").inner_text() == "3/3 done"
    prepare = page.locator("svg.timeline g.attempt[data-task=prepare]")
    assert prepare.get_attribute("data-outcome") == "reused"
    assert page.locator("svg.timeline g.resume-mark").count() == 1
    assert "posted entries for invoice 42" in page.locator("tr[data-task=confirm]").inner_text()
    shot(page, tmp_path, "resumed-run")


def test_a_run_going_on_here_is_cancelled_from_its_page(acting: Any, recorded: Recorded, browser: Any) -> None:
    flows = recorded.flows
    started = threading.Event()
    outcome: list[Any] = []

    async def run_it() -> None:
        flows.HANG["started"] = anyio.Event()

        async def watch() -> None:
            await flows.HANG["started"].wait()
            started.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            outcome.append(await flows.orchestrator.run_workflow("long job", "x", run_id="to-cancel"))

    worker = threading.Thread(target=anyio.run, args=(run_it,), daemon=True)
    worker.start()
    assert started.wait(15)
    page = browser.new_page()
    page.on("dialog", lambda d: d.accept())
    sign_in(page, acting.url, path="/runs/to-cancel")
    assert page.locator("#run-status").inner_text() == "running"
    page.click("#cancel-run")
    worker.join(15)
    assert outcome and outcome[0].status is TaskStatus.CANCELLED
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=15_000)
    assert "cancelled from the dashboard" in page.locator("#run-error").inner_text()
