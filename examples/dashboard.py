"""The dashboard: record a few runs in SQLite, serve the dashboard on 127.0.0.1, read its pages.

Four workflows run (one retries a flaky step, one fails, one waits for a person to approve a
refund), recorded in ``runs.db``. The dashboard is then served by uvicorn with the
orchestrator, so it can also resume the failed run and answer the waiting one; the script reads
the runs page and the failed run's page (its error and traceback) over HTTP with its token, resumes the run through the
dashboard, answers the refund's question on the Approvals page (as "Ada") and stops. Run it
with ``--serve`` to keep the server up and open it in a browser, where the refund waits on the
Approvals page for your answer. Needs pyagent-dashboard, pyagent-sql and pyagent-sequential.

The same store, read-only, from the command line: ``pyagent dashboard --storage sqlite://runs.db``.
"""

from __future__ import annotations

import html
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import anyio
import uvicorn
from pyagent_dashboard import create_app

from pyagent import Approval
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow

STORE = "sqlite://runs.db"
TOKEN = "example-token"
LEDGER = {"up": False}
tries = {"rates": 0}


def rates(currency: str) -> str:
    tries["rates"] += 1
    if tries["rates"] == 1:
        raise TimeoutError("the rates service timed out")
    return f"rates for {currency}"


def post(entries: str) -> str:
    if not LEDGER["up"]:
        raise ConnectionError("ledger service is down")
    return f"posted {entries}"


async def approve(claim: dict[str, Any], ctx: Any) -> str:
    answer = await ctx.interrupt(f"Refund ${claim['amount']} for order {claim['order']}?", schema=Approval,
                                 timeout=24 * 3600, metadata={"customer": claim["customer"]})
    return f"refunded ${claim['amount']}" if answer.approved else f"refund refused: {answer.comment}"


orchestrator = Orchestrator(store=STORE)
checkpoints = {"storage": STORE}
orchestrator.add_workflow(Workflow(name="report", checkpointing=checkpoints, steps=[
    Task(name="research", agent=lambda topic: f"notes on {topic}"),
    Task(name="write", agent=lambda notes: f"article from {notes}")]))
orchestrator.add_workflow(Workflow(name="rates", checkpointing=checkpoints, steps=[
    Task(name="fetch", agent=rates, retry_config=RetryConfig(max_retries=2, initial_delay=0.1)),
    Task(name="convert", agent=lambda r: f"converted {r}")]))
orchestrator.add_workflow(Workflow(name="ledger", checkpointing=checkpoints, steps=[
    Task(name="prepare", agent=lambda x: f"entries for {x}"), Task(name="post", agent=post)]))
orchestrator.add_workflow(Workflow(name="refund", checkpointing=checkpoints, steps=[
    Task(name="approve", agent=approve)]))


async def record() -> tuple[str, str]:
    await orchestrator.run_workflow("report", {"topic": "AI agents", "api_key": "sk-not-shown"})
    await orchestrator.run_workflow("rates", "EUR")
    failed = await orchestrator.run_workflow("ledger", "invoice 42")
    waiting = await orchestrator.workflows["refund"].run({"order": "A-1001", "amount": 120, "customer": "ada"},
                                                         wait_for_answers=False)
    print(f"recorded 4 runs; ledger {failed.status.value}: {failed.error}; refund {waiting.status.value}")
    return failed.run_id, waiting.run_id


def status_of(base: str, run_id: str, want: str) -> str:
    now: Any = None
    for _ in range(100):
        now = re.search(r'id="run-status">([a-z]+)<', fetch(f"{base}/runs/{run_id}")[1])
        if now and now.group(1) == want:
            break
        time.sleep(0.1)
    return now.group(1) if now else "?"


def fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
    body = None if data is None else urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                               "Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode(), response.headers.get("Set-Cookie") or ""


def main() -> None:
    run_id, refund_id = anyio.run(record)
    app = create_app(orchestrator=orchestrator, read_only=False, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    print(f"dashboard on {base}/runs (token {TOKEN!r})")
    if "--serve" in sys.argv:
        LEDGER["up"] = True
        print(f"open it in a browser; the refund waits on {base}/approvals; Ctrl+C stops it")
        thread.join()
        return
    try:
        status, runs, _ = fetch(f"{base}/runs")
        shown = re.findall(r'data-run="[^"]+" data-status="([a-z]+)"', runs)
        print(f"runs page: HTTP {status}, statuses {shown}")
        status, page, _ = fetch(f"{base}/runs/{run_id}")
        error = "ConnectionError: ledger service is down" in page
        offered = 'id="resume-run"' in page
        # Under the error, collapsed: the failure's traceback, down to the line of post() that raised.
        traceback = re.search(r'id="run-traceback"><summary>traceback</summary><pre>(.*?)</pre>', page, re.S)
        where = traceback is not None and ", in post\n" in html.unescape(traceback.group(1))
        print(f"failed run's page: HTTP {status}, error shown: {error}, traceback names post(): {where}, "
              f"resume offered: {offered}")
        LEDGER["up"] = True
        # The browser's form carries a CSRF token; a request with the bearer token needs none.
        fetch(f"{base}/runs/{run_id}/resume", {})
        print(f"after resuming from the dashboard: {status_of(base, run_id, 'completed')}")
        # The refund waits for an answer: the Approvals page has its question, with a form made
        # from its schema (Approval: approved yes/no, a comment). Answer it as the form does.
        status, page, _ = fetch(f"{base}/approvals")
        question = re.search(r'data-question="([0-9a-f]+)" data-run="' + re.escape(refund_id), page)
        assert question is not None, "the refund's question is not on the Approvals page"
        asked: Any = re.search(r'class="question-text">([^<]+)<', page)
        print(f"approvals page: HTTP {status}, asks {html.unescape(asked.group(1))!r}")
        fetch(f"{base}/approvals/{refund_id}/{question.group(1)}",
              {"answer.approved": "true", "answer.comment": "loyal customer", "answered_by": "Ada"})
        print(f"after answering as Ada: the refund {status_of(base, refund_id, 'completed')}")
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()
