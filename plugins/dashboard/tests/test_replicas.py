"""The dashboard of one ``pyagent serve`` replica acting on runs another replica holds.

Two real ``pyagent serve tests/replicated.py`` processes share one SQLite store that is a run
queue; the test drives replica A's dashboard (at /ui) in chromium while replica B runs the
runs: a run B holds is cancelled from A's page (B stops it at its next task boundary), a queued
run is cancelled at once, a failed run is resumed to completion from A's page, and a run
cancelled on request is not offered for resuming (its store keeps the request). Waits are
bounded; both processes are stopped by the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import HERE, TOKEN, CliServer, ServeProcess, sign_in
from .test_serve import http, in_thread, shot

pytestmark = pytest.mark.slow

APP = HERE / "replicated.py"


class Replicas:
    """Where the two replicas' files are, and the replicas once started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = f"sqlite:///{folder / 'shared.db'}"
        self.calls = folder / "calls.txt"
        self.gate = folder / "gate"
        self.ledger_up = folder / "ledger-up"
        self.started: list[ServeProcess] = []

    def start(self) -> ServeProcess:
        env = {"PYAGENT_DASHBOARD_TEST_CALLS": str(self.calls), "PYAGENT_DASHBOARD_TEST_GATE": str(self.gate)}
        replica = ServeProcess(self.folder, "--token", TOKEN, "--poll-interval", "0.1", app=APP, store=self.store,
                               env=env)
        self.started.append(replica)
        return replica

    def ran(self) -> list[tuple[str, str, int]]:
        """Every task started, as ``(task, n, pid)``, in order."""
        if not self.calls.exists():
            return []
        return [(t, n, int(pid)) for t, n, pid in (line.split() for line in self.calls.read_text().splitlines())]


def is_queue(url: str) -> bool:
    from pyagent.plugin import close_store, open_store, supports_queue

    async def check() -> bool:
        store = await open_store(url)
        try:
            return supports_queue(store)
        finally:
            await close_store(store)

    return bool(in_thread(check))


def cancel_request(url: str, run_id: str) -> str | None:
    from pyagent.plugin import close_store, open_store

    async def read() -> str | None:
        store = await open_store(url)
        try:
            return (await store.cancel_requests([run_id])).get(run_id)  # type: ignore[attr-defined, no-any-return]
        finally:
            await close_store(store)

    return in_thread(read)  # type: ignore[no-any-return]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    for module, dist in (("pyagent_sql", "pyagent-sql"), ("pyagent_webhooks", "pyagent-webhooks")):
        pytest.importorskip(module, reason=f"replicas serving webhooks on a shared store need {dist}")
    shared = Replicas(tmp_path)
    if not is_queue(shared.store):
        pytest.skip("the installed pyagent-sql store is not a run queue yet (no request_cancel): install "
                    "pyagent-sql with the run queue (schema version 4)")
    try:
        yield shared
    finally:
        codes = [r.stop() for r in shared.started]
        assert codes == [0] * len(codes), "a replica did not stop cleanly on SIGTERM:\n" + "\n\n".join(
            "".join(r.log) for r in shared.started)


def status(replica: ServeProcess, run_id: str, want: str, *, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        code, text = http(f"{replica.base}/runs/{run_id}")
        if code == 200 and json.loads(text)["status"] == want:
            return dict(json.loads(text))
        assert time.monotonic() < deadline, f"run {run_id} did not become {want}: {code} {text}"
        time.sleep(0.1)


def until(check: Any, what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_run(replica: ServeProcess, hook: str, n: int) -> str:
    code, text = http(f"{replica.base}/hooks/{hook}", body={"n": n})
    assert code == 202, text
    return str(json.loads(text)["run_id"])


def test_a_run_another_replica_holds_is_cancelled_from_this_replica_s_dashboard(
        replicas: Replicas, browser: Any, tmp_path: Path) -> None:
    b = replicas.start()
    held = start_run(b, "steps", 1)
    until(lambda: ("gated", "1", b.proc.pid) in replicas.ran(), "replica B to reach the gated task")
    queued = start_run(b, "steps", 2)  # max_active_runs=1: it waits in the queue behind the first
    a = replicas.start()  # started after B took the first run: it holds nothing
    page = browser.new_page()
    page.on("dialog", lambda d: d.accept())

    # A queued run nobody holds is cancelled at once.
    sign_in(page, a.ui, path=f"/runs/{queued}")
    expect(page.locator("#run-status")).to_have_text("pending")
    page.click("#cancel-run")
    expect(page.locator("#notice")).to_contain_text("no process was running it")
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=15_000)
    assert status(a, queued, "cancelled")["tasks_completed"] == 0

    # The run B holds: A's dashboard asks the store; B stops it at its next task boundary.
    page.goto(f"{a.ui}/runs/{held}")
    expect(page.locator("#run-status")).to_have_text("running")
    assert page.locator("#cancel-run").count() == 1
    page.click("#cancel-run")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Cancel requested from the dashboard")
    assert "stops the run at its next task boundary" in notice.inner_text()
    assert cancel_request(replicas.store, held) == "cancelled from the dashboard"
    expect(page.locator("#run-status")).to_have_text("running")  # the gated task goes on meanwhile
    assert page.locator("#cancel-run").count() == 0  # asked already: the page says so instead
    assert "Cancel requested (cancelled from the dashboard)" in page.locator(".actions").inner_text()
    shot(page, tmp_path, "cancel-requested")
    # B asks the store once a second which of its runs were asked to cancel.
    until(lambda: any(held in line and "cancel requested" in line for line in b.log),
          "replica B to see the cancel request")
    replicas.gate.touch()  # the gated task finishes; the boundary after it stops the run
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=20_000)
    assert "cancelled from the dashboard" in page.locator("#run-error").inner_text()
    ended = status(b, held, "cancelled")
    assert ended["tasks_completed"] == 2
    ran = replicas.ran()
    assert ("last", "1", b.proc.pid) not in ran and not any(pid == a.proc.pid for _, _, pid in ran)
    assert not any(n == "2" for _, n, _ in ran)  # the cancelled queued run never started anywhere

    # Resuming it would be stopped again (the store keeps the request): not offered, and why.
    page.reload()
    assert page.locator("#resume-run").count() == 0
    assert "its store keeps that request" in page.locator(".actions").inner_text()
    shot(page, tmp_path, "cancelled-elsewhere")


def test_a_failed_run_is_resumed_to_completion_from_another_replica_s_dashboard(
        replicas: Replicas, browser: Any, tmp_path: Path) -> None:
    b = replicas.start()
    run_id = start_run(b, "ledger", 7)
    failed = status(b, run_id, "failed")
    assert "ledger service is down" in failed["error"]
    a = replicas.start()
    page = browser.new_page()
    sign_in(page, a.ui, path=f"/runs/{run_id}")
    page.locator("#run-traceback summary").click()
    assert 'replicated.py", line' in page.locator("#run-traceback pre").inner_text()  # where post() raised
    replicas.ledger_up.touch()
    page.click("#resume-run")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    assert "confirmed: posted invoice 7" in page.locator("tr[data-task=confirm]").inner_text()
    assert status(b, run_id, "completed")["tasks_completed"] == 3
    posts = [pid for task, n, pid in replicas.ran() if task == "post"]
    assert posts == [b.proc.pid, a.proc.pid]  # failed on B, resumed (and posted) on A, once
    shot(page, tmp_path, "resumed-on-another-replica")


def test_a_read_only_dashboard_on_a_queue_store_cancels_nothing(replicas: Replicas, browser: Any) -> None:
    b = replicas.start()
    held = start_run(b, "steps", 3)
    until(lambda: ("gated", "3", b.proc.pid) in replicas.ran(), "replica B to reach the gated task")
    reader = CliServer("--storage", replicas.store, "--port", "0", "--poll-interval", "0.2")
    try:
        page = browser.new_page()
        page.goto(f"{reader.url}/runs/{held}")
        assert page.locator("#cancel-run").count() == 0
        csrf = {c["name"]: c["value"] for c in browser.cookies()}["pyagent_dashboard_csrf"]
        refused = page.request.post(f"{reader.url}/runs/{held}/cancel", form={"csrf": csrf})
        assert refused.status == 403 and "read-only" in refused.text()
        assert cancel_request(replicas.store, held) is None
    finally:
        reader.stop()
        replicas.gate.touch()
    assert status(b, held, "completed")["tasks_completed"] == 3
