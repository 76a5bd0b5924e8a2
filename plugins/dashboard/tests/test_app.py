"""The dashboard over HTTP, without a browser: the token, CSRF, read-only, escaping, masking, paging."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pyagent_dashboard import Page, create_app
from pyagent_dashboard.cli import is_loopback
from pyagent_dashboard.data import RunFilters
from pyagent_dashboard.metrics import percentile
from pyagent_dashboard.security import MASK, mask, session_value

from pyagent.plugin import ConfigurationError

from .conftest import TOKEN, Recorded

HTML = {"accept": "text/html"}


@pytest.fixture
def read_only(recorded: Recorded, serve: Any) -> Any:
    with serve(create_app(recorded.url, token=TOKEN, workflows=recorded.flows.orchestrator.workflows.values(),
                          poll_interval=0.1)) as server:
        yield server


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_every_page_needs_the_token(read_only: Any) -> None:
    with httpx.Client(base_url=read_only.url) as client:
        for path in ("/runs", "/runs/report-1", "/metrics", "/runs/stream", "/runs/report-1/stream"):
            assert client.get(path).status_code == 401, path
            redirect = client.get(path, headers=HTML)
            assert redirect.status_code == 303 and redirect.headers["location"].startswith("/login?next=")
        assert client.get("/runs", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/runs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/static/dashboard.css").status_code == 200  # styles for the login page
        assert client.post("/runs/report-1/resume").status_code == 401


def test_signing_in_sets_a_cookie_that_is_not_the_token(read_only: Any) -> None:
    with httpx.Client(base_url=read_only.url, headers=HTML) as client:
        form = client.get("/login")
        csrf = csrf_of(form.text)
        wrong = client.post("/login", data={"csrf": csrf, "token": "nope", "next": "/metrics"})
        assert wrong.status_code == 401 and "not the dashboard&#39;s token" in wrong.text
        ok = client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "//evil.example/x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/runs"  # no open redirect
        cookie = client.cookies["pyagent_dashboard_session"]
        assert cookie == session_value(TOKEN) and TOKEN not in cookie
        set_cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert client.get("/runs").status_code == 200
        without_csrf = client.post("/logout", data={})
        assert without_csrf.status_code == 403
        client.post("/logout", data={"csrf": csrf})
        assert client.get("/runs").status_code == 303


def test_read_only_has_no_buttons_and_refuses_actions(read_only: Any, recorded: Recorded) -> None:
    headers = {**HTML, "authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=read_only.url, headers=headers) as client:
        page = client.get(f"/runs/{recorded.ids['broken']}")
        assert page.status_code == 200
        assert "resume-run" not in page.text and "cancel-run" not in page.text
        for action in ("resume", "cancel"):
            refused = client.post(f"/runs/{recorded.ids['broken']}/{action}", data={})
            assert refused.status_code == 403 and "read-only" in refused.text


def test_outputs_are_escaped_and_secrets_masked(read_only: Any, recorded: Recorded) -> None:
    with httpx.Client(base_url=read_only.url, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        page = client.get(f"/runs/{recorded.ids['report']}")
        assert "<script>window.__xss" not in page.text
        assert "&lt;script&gt;window.__xss" in page.text
        assert "sk-live-123456" not in page.text and "hunter2" not in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"


def raising_line(fn: Any, text: str) -> str:
    """How a traceback names the line of ``fn`` that holds ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(fn)
    number = first + next(i for i, line in enumerate(lines) if text in line)
    return f'{inspect.getsourcefile(fn)}", line {number}, in {fn.__name__}'


def test_a_failed_run_shows_its_tracebacks_collapsed_and_escaped(read_only: Any, recorded: Recorded) -> None:
    from html import unescape

    with httpx.Client(base_url=read_only.url, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        page = client.get(f"/runs/{recorded.ids['broken']}").text
    run_error = page[page.index('id="run-error"'):page.index("<h2>Timeline</h2>")]
    found = re.search(r'<details class="traceback" id="run-traceback"><summary>traceback</summary><pre>(.*?)</pre>',
                      run_error, re.S)
    assert found, "the run's error has no collapsed traceback"
    shown = unescape(found.group(1))
    assert shown.startswith("Traceback (most recent call last):")
    assert raising_line(recorded.flows.check_invoice, "raise ValueError") in shown  # the agent's own line
    assert raising_line(recorded.flows.read_total, "raise ArithmeticError") in shown  # and its cause's
    assert "TaskFailedError: task 'check' failed" in shown
    # The markup in the cause's message is text: escaped in the HTML, never a tag.
    assert "<script>window.__xss" not in page and "&lt;script&gt;window.__xss" in found.group(1)
    row = page[page.index('<tr data-task="check">'):]
    task_tb = re.search(r'<div class="task-error">.*?<details class="traceback"><summary>traceback</summary>'
                        r'<pre>(.*?)</pre>', row, re.S)
    assert task_tb and raising_line(recorded.flows.check_invoice, "raise ValueError") in unescape(task_tb.group(1))
    assert "TaskFailedError" not in unescape(task_tb.group(1))  # the task's own: where the agent raised


def test_a_run_without_a_failure_has_no_traceback(read_only: Any, recorded: Recorded) -> None:
    with httpx.Client(base_url=read_only.url, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        page = client.get(f"/runs/{recorded.ids['report']}").text
        flaky = client.get(f"/runs/{recorded.ids['flaky']}").text
    assert 'class="traceback"' not in page and 'id="run-error"' not in page
    # A retried task that then succeeded: its failed attempt keeps its traceback, in the attempts list.
    attempts = flaky[flaky.index('<details class="attempts">'):]
    attempts = attempts[:attempts.index("</details>\n")]
    assert attempts.count('<details class="traceback">') == 1 and "in flaky_fetch" in attempts


def test_mask_hides_secret_keys_at_any_depth() -> None:
    value = {"API_KEY": "a", "keys": ["k"], "access_token": "t", "Client-Secret": "s", "password": "p",
             "user": {"db_password": "p2", "name": "ada", "items": [{"refresh_token": "r", "n": 1}]},
             "monkey": "also masked: the rule is a pattern", 3: "non-text keys stay"}
    assert mask(value) == {
        "API_KEY": MASK, "keys": MASK, "access_token": MASK, "Client-Secret": MASK, "password": MASK,
        "user": {"db_password": MASK, "name": "ada", "items": [{"refresh_token": MASK, "n": 1}]},
        "monkey": MASK, 3: "non-text keys stay"}


def test_pages_are_read_from_the_store_in_pages(read_only: Any, recorded: Recorded) -> None:
    with httpx.Client(base_url=read_only.url, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        first = re.findall(r'data-run="([^"]+)"', client.get("/runs?workflow=bulk&limit=20").text)
        second = re.findall(r'data-run="([^"]+)"', client.get("/runs?workflow=bulk&limit=20&offset=20").text)
        assert first == [f"bulk-{n:02d}" for n in range(24, 4, -1)]
        assert second == [f"bulk-{n:02d}" for n in range(4, -1, -1)]
        missing = client.get("/runs/no-such-run")
        assert missing.status_code == 404 and "no run 'no-such-run'" in missing.text


def test_a_live_stream_says_when_the_page_changed(read_only: Any, recorded: Recorded) -> None:
    with httpx.Client(base_url=read_only.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
        page = client.get("/runs?workflow=bulk")
        stream_url = re.search(r'data-live="([^"]+)"', page.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        stale = re.sub(r"v=[0-9a-f]+", "v=0000", stream_url)
        with client.stream("GET", stale) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            seen = [next(lines) for _ in range(3)]
        assert "event: changed" in seen  # the page it was rendered from is out of date


def test_create_app_needs_a_store_and_takes_more_pages(recorded: Recorded, serve: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs a store"):
        create_app()
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("reports here")

    from pyagent_dashboard.pages import default_pages

    extra = Page(name="reports", title="Reports", path="/reports",
                 routes=lambda dashboard: [Route("/reports", hello)])
    hidden = Page(name="exports", title="Exports", path="/exports", routes=lambda dashboard: [],
                  available=lambda dashboard: False)
    with serve(create_app(recorded.url, pages=[*default_pages(), extra, hidden])) as server:
        runs = httpx.get(server.url + "/runs")
        assert '>Reports</a>' in runs.text and "Exports" not in runs.text and '>Approvals</a>' in runs.text
        assert httpx.get(server.url + "/reports").text == "reports here"


def test_the_dashboard_works_mounted_under_a_prefix(recorded: Recorded, serve: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = create_app(recorded.url, token=TOKEN)
    outer = Starlette(routes=[Mount("/ui", app=inner)])
    with serve(outer) as server, httpx.Client(base_url=server.url, headers=HTML) as client:
        login = client.get("/ui/runs")
        assert login.status_code == 303 and login.headers["location"] == "/ui/login?next=%2Fruns"
        form = client.get("/ui/login")
        assert 'action="/ui/login"' in form.text and 'href="/ui/static/dashboard.css"' in form.text
        signed = client.post("/ui/login", data={"csrf": csrf_of(form.text), "token": TOKEN, "next": "/runs"})
        assert signed.headers["location"] == "/ui/runs"
        page = client.get("/ui/runs")
        assert page.status_code == 200 and 'href="/ui/runs/ledger-1"' in page.text


def test_filters_that_make_no_sense_are_reported_not_fatal() -> None:
    f = RunFilters.parse({"status": "lost", "since": "yesterday", "limit": "x", "offset": "-3"})
    assert f.status is None and f.since is None and f.limit == 50 and f.offset == 0
    assert len(f.problems) == 4
    assert RunFilters.parse({"limit": "37"}).limit == 50 and RunFilters.parse({"limit": "1000"}).limit == 200


def test_percentiles() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


def test_the_command_refuses_a_public_address_without_a_token(recorded: Recorded) -> None:
    from pyagent.cli import main

    out = CliRunner().invoke(main, ["dashboard", "--storage", recorded.url, "--host", "0.0.0.0"], env={})
    assert out.exit_code == 2 and "without a token" in out.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_command_reports_a_bad_workflows_file(recorded: Recorded, tmp_path: Path) -> None:
    from pyagent.cli import main

    bad = tmp_path / "flows.py"
    bad.write_text("raise RuntimeError('no flows today')\n")
    out = CliRunner().invoke(main, ["dashboard", "--storage", recorded.url, "--workflows", str(bad)])
    assert out.exit_code == 2 and "no flows today" in out.output
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    out = CliRunner().invoke(main, ["dashboard", "--storage", recorded.url, "--workflows", str(empty)])
    assert out.exit_code == 2 and "defines no Workflow" in out.output


def test_the_command_is_listed_and_documented() -> None:
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "dashboard" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "dashboard", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert "--storage" in out.stdout and "--token" in out.stdout and "127.0.0.1" in out.stdout
