"""``pyagent serve`` in real subprocesses on SQLite: SIGTERM, SIGKILL, restarts and cron misfires.

The served file's agents note every call in a file, so "no completed task re-run" is counted,
not assumed; a gate file holds the middle task until the test opens it.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import Served, wait_for

APP = textwrap.dedent('''
    import os
    from pathlib import Path

    import anyio

    from pyagent.orchestrator import ExecutionPattern, Orchestrator, Task, Workflow

    CALLS = Path(os.environ["CALLS"])
    GATE = Path(os.environ["GATE"])


    def note(name):
        with CALLS.open("a") as f:
            f.write(name + "\\n")


    def first(x):
        note("first")
        return {"seen": x}


    async def slow(x):
        note("slow-start")
        while not GATE.exists():
            await anyio.sleep(0.02)
        note("slow-done")
        return x


    def last(x):
        note("last")
        return "done"


    job = Workflow(name="job", pattern=ExecutionPattern.SEQUENTIAL, steps=[
        Task(name="first", agent=first), Task(name="slow", agent=slow), Task(name="last", agent=last)])
    tick = Workflow(name="tick", steps=[Task(name="t", agent=lambda x: note("tick") or "ticked")])

    orchestrator = Orchestrator()
    orchestrator.on_webhook("/jobs", workflow=job)
    if os.environ.get("MISFIRE"):
        orchestrator.schedule(tick, cron="* * * * * *", misfire=os.environ["MISFIRE"])
''')

@pytest.fixture
def served(tmp_path: Path, serve_process: Callable[..., Served]) -> Callable[..., Served]:
    """``served(**env)``: ``pyagent serve app.py`` on ``runs.db``, ready; each call a new process."""
    (tmp_path / "app.py").write_text(APP)
    env = {"CALLS": str(tmp_path / "calls.txt"), "GATE": str(tmp_path / "gate")}

    def start(**extra: str) -> Served:
        return serve_process(str(tmp_path / "app.py"), "--port", "0", "--storage", f"sqlite:///{tmp_path / 'runs.db'}",
                             "--grace", "0.5", cwd=tmp_path, env={**os.environ, **env, **extra})

    return start


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def header(db: Path, run_id: str) -> tuple[str, ...] | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT status FROM pyagent_runs WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    return tuple(row) if row else None


def status(url: str, run_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/runs/{run_id}", timeout=10).json())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_run_stopped_mid_way_resumes_on_the_next_start_without_rerunning_completed_tasks(
        served: Any, tmp_path: Path, sig: int) -> None:
    first = served()
    accepted = httpx.post(f"{first.url}/jobs", json={"ticket": 7}, timeout=10)
    assert accepted.status_code == 202
    run_id = accepted.json()["run_id"]
    wait_for(lambda: "slow-start" in calls(tmp_path), "the slow task to start")
    code = first.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, first.output
        assert "checkpointed at shutdown" in first.output
        assert header(tmp_path / "runs.db", run_id) == ("pending",)  # suspended, to resume
    else:
        assert code == -signal.SIGKILL
        assert header(tmp_path / "runs.db", run_id) == ("running",)  # what a dead process leaves

    (tmp_path / "gate").touch()
    second = served()
    done = wait_for(lambda: (s := status(second.url, run_id))["status"] == "completed" and s, "the resumed run")
    assert done["tasks_completed"] == 3 and done["output"] == "done"
    assert calls(tmp_path) == ["first", "slow-start", "slow-start", "slow-done", "last"]  # first ran once
    assert f"resuming run {run_id}" in second.output
    assert second.stop() == 0


def test_an_idempotency_key_maps_to_one_run_across_a_restart(served: Any, tmp_path: Path) -> None:
    (tmp_path / "gate").touch()
    first = served()
    key = {"Idempotency-Key": "order-1234"}
    a = httpx.post(f"{first.url}/jobs", json={"n": 1}, headers=key, timeout=10)
    run_id = a.json()["run_id"]
    wait_for(lambda: status(first.url, run_id)["status"] == "completed", "the run")
    assert first.stop() == 0
    second = served()
    b = httpx.post(f"{second.url}/jobs", json={"n": 1}, headers=key, timeout=10)
    assert (b.status_code, b.json()["run_id"], b.headers.get("idempotent-replayed")) == (202, run_id, "true")
    assert status(second.url, run_id)["status"] == "completed"
    assert calls(tmp_path).count("first") == 1
    assert second.stop() == 0


def _ticks(db: Path) -> dict[float, str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT run_id, status FROM pyagent_runs WHERE run_id LIKE 'tick@%'").fetchall()
    finally:
        conn.close()
    out = {}
    for run_id, st in rows:
        stamp = run_id.split("@", 1)[1]
        out[time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone] = st
    return out


@pytest.mark.slow
@pytest.mark.parametrize("misfire", ["run_once", "skip"])
def test_cron_ticks_that_fell_while_nothing_served_follow_misfire(served: Any, tmp_path: Path, misfire: str) -> None:
    db = tmp_path / "runs.db"
    first = served(MISFIRE=misfire)
    wait_for(lambda: any(st == "completed" for st in _ticks(db).values()), "a first tick to run")
    assert first.stop() == 0
    before = _ticks(db)
    last_before = max(before)
    time.sleep(3.5)  # ticks fall while nothing serves: the point of the test, not a wait for an event
    second = served(MISFIRE=misfire)
    count = int(wait_for(lambda: re.search(r"missed (\d+) tick\(s\) while not serving", second.output),
                         "the missed ticks to be found").group(1))
    missed = [last_before + n for n in range(1, count + 1)]
    assert count >= 3

    def settled() -> bool:
        ticks = _ticks(db)
        return all(t in ticks and ticks[t] not in ("pending", "running") for t in missed)

    wait_for(settled, "every missed tick to be recorded and its run to finish")
    assert second.stop() == 0
    after = _ticks(db)
    ran = [t for t in missed if after[t] == "completed"]
    skipped = [t for t in missed if after[t] == "skipped"]
    if misfire == "skip":
        assert ran == [] and skipped == missed
    else:  # one run for all of them: the latest missed tick's
        assert ran == missed[-1:] and skipped == missed[:-1]
    assert calls(tmp_path).count("tick") == sum(1 for st in after.values() if st == "completed")


def test_a_store_that_cannot_open_is_one_clean_line_naming_why(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        from pyagent import Task, Workflow
        from pyagent.orchestrator import Orchestrator
        orchestrator = Orchestrator()
        orchestrator.on_event("ping", workflow=Workflow(name="w", steps=[Task(name="a", agent=lambda x: x)]))
    """))
    missing = tmp_path / "no" / "such" / "dir" / "runs.db"
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "serve", str(app), "--port", "0",
                          "--storage", f"sqlite:///{missing}"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot open the SQLite store") and "does not exist" in last
    assert "TaskGroup" not in out.stderr and "Traceback" not in out.stderr
