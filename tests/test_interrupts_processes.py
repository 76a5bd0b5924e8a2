"""Durable interrupts across real processes on SQLite and PostgreSQL.

A run waits for a person in one process, that process is killed with SIGKILL, the question is
answered from a new process with ``pyagent approve``, and the run finishes: in a ``pyagent
serve`` process (already serving when the answer arrives, or started after it) or with
``pyagent resume``. The served file's agents note every call in a file, so "completed tasks
never run again" and "the interrupted task runs again from its start" are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyagent_sql")
pytest.importorskip("pyagent_webhooks")

APP = textwrap.dedent('''
    import os
    from pathlib import Path

    from pyagent import Approval
    from pyagent.orchestrator import Orchestrator, Task, Workflow

    STORAGE = os.environ["STORAGE"]
    CALLS = Path(os.environ["CALLS"])


    def note(name):
        with CALLS.open("a") as f:
            f.write(name + "\\n")


    def prepare(order):
        note("prepare")
        return {"order": order, "amount": 120}


    async def approve(claim, ctx):
        note("approve-start")
        answer = await ctx.interrupt(f"Approve refund of ${claim['amount']}?", schema=Approval)
        note("approve-answered")
        return {"claim": claim, "approved": answer.approved}


    def pay(decision):
        note("pay")
        return "paid" if decision["approved"] else "refused"


    refund = Workflow(name="Refund", steps=[Task(name="Prepare", agent=prepare),
                                            Task(name="Approve", agent=approve), Task(name="Pay", agent=pay)],
                      checkpointing={"storage": STORAGE})
    orchestrator = Orchestrator(store=STORAGE)
    orchestrator.on_webhook("/refunds", workflow=refund, auth="bearer", secret="s3cret")
''')

LISTENING = re.compile(r"webhooks listening on (http://127\.0\.0\.1:\d+)")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    base = os.environ.get("PYAGENT_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PYAGENT_TEST_POSTGRES_URL is not set: no PostgreSQL server to run against "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test; CI sets it)")
    schema = f"pyagent_hitl_{uuid.uuid4().hex[:10]}"
    yield base + ("&" if "?" in base else "?") + f"schema={schema}"
    asyncio.run(_drop_schema(base.split("?", 1)[0], schema))


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


class Child:
    """A ``pyagent`` subprocess whose output is read as it comes."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    found = re.search(pattern, line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._more()):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")
                self.changed.wait(min(left, 0.2))

    def _more(self) -> bool:
        return False

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def app(tmp_path: Path, storage: str) -> Iterator[Any]:
    (tmp_path / "app.py").write_text(APP)
    env = {**os.environ, "STORAGE": storage, "CALLS": str(tmp_path / "calls.txt")}
    env.pop("PYAGENT_STORAGE", None)
    children: list[Child] = []

    class App:
        path = tmp_path / "app.py"
        url = storage

        @staticmethod
        def start(*args: str) -> Child:
            child = Child(list(args), tmp_path, env)
            children.append(child)
            return child

        @staticmethod
        def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "pyagent.cli", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=timeout)

        @staticmethod
        def calls() -> Counter[str]:
            path = tmp_path / "calls.txt"
            return Counter(path.read_text().split()) if path.exists() else Counter()

        @staticmethod
        def wait_calls(name: str, count: int = 1, timeout: float = 60) -> float:
            started = time.monotonic()
            while App.calls()[name] < count:
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"{name!r} was not called {count} time(s) within {timeout} s: {App.calls()}")
                time.sleep(0.02)
            return time.monotonic() - started

    yield App
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(30)


def start_waiting_and_kill(app: Any, run_id: str) -> str:
    """``pyagent run`` until the run waits for its question, then SIGKILL; the question's id."""
    first = app.start("run", str(app.path), "--run-id", run_id, "--input", "7")
    first.wait_for(r"waits for 1 answer")
    pending = app.cli("pending", "--storage", app.url, "--json")
    assert pending.returncode == 0, pending.stderr
    (question,) = json.loads(pending.stdout)
    assert question["run_id"] == run_id and question["task"] == "Approve"
    assert question["question"] == "Approve refund of $120?" and question["schema"]["required"] == ["approved"]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert app.calls() == {"prepare": 1, "approve-start": 1}
    return str(question["id"])


def assert_refusals(app: Any, run_id: str, question_id: str) -> None:
    """A schema mismatch and a forged id are refused; the run keeps waiting."""
    bad = app.cli("approve", run_id, question_id, "--answer", '{"approved": "yes"}', "--storage", app.url)
    assert bad.returncode == 1 and "answer.approved: must be a boolean, got a string" in bad.stderr
    forged = app.cli("approve", run_id, "f" * 32, "--answer", '{"approved": true}', "--storage", app.url)
    assert forged.returncode == 1 and f"has no question '{'f' * 32}'" in forged.stderr
    still = json.loads(app.cli("pending", "--storage", app.url, "--json").stdout)
    assert [q["id"] for q in still] == [question_id]


def assert_finished_once(app: Any, run_id: str) -> None:
    # Prepare ran once; Approve ran twice (asked, then again with the answer); Pay once.
    assert app.calls() == {"prepare": 1, "approve-start": 2, "approve-answered": 1, "pay": 1}
    history = app.cli("history", "--storage", app.url, "--json")
    assert history.returncode == 0, history.stderr
    (record,) = json.loads(history.stdout)
    assert record["run_id"] == run_id and record["status"] == "completed"
    trail = {a["kind"]: a for a in record["audit"]}
    assert trail["interrupt.asked"]["data"]["question"] == "Approve refund of $120?"
    assert trail["interrupt.answered"]["data"]["answered_by"] == "alice"
    assert json.loads(trail["interrupt.answered"]["data"]["answer"]) == {"approved": True}
    text = app.cli("history", "--storage", app.url).stdout
    assert "asked 'Approve refund of $120?'" in text and "answered by alice" in text


def test_a_killed_waiting_run_is_answered_from_another_process_and_a_serving_process_finishes_it(
        app: Any) -> None:
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    question_id = start_waiting_and_kill(app, run_id)
    serve = app.start("serve", str(app.path), "--port", "0", "--storage", app.url, "--grace", "1")
    serve.wait_for(LISTENING.pattern)
    serve.wait_for(rf"run {run_id} of 'Refund' waits for 1 answer")  # adopted: it continues it once answered
    assert_refusals(app, run_id, question_id)
    time.sleep(1.0)
    assert app.calls()["pay"] == 0  # nobody answered yet: it still waits

    answered = app.cli("approve", run_id, "--answer", '{"approved": true}', "--by", "alice", "--storage", app.url)
    assert answered.returncode == 0, answered.stderr
    assert "Answered 'Approve refund of $120?'" in answered.stdout and "by alice" in answered.stdout
    took = app.wait_calls("pay", timeout=30)
    assert took < 5, f"the serving process took {took:.1f} s to continue the run after the answer"
    assert serve.stop() == 0
    assert_finished_once(app, run_id)


def test_an_answer_given_while_nothing_serves_is_applied_by_the_next_serve_start(app: Any) -> None:
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    start_waiting_and_kill(app, run_id)
    answered = app.cli("approve", run_id, "--answer", '{"approved": true}', "--by", "alice", "--storage", app.url)
    assert answered.returncode == 0, answered.stderr
    assert "if none does, continue it with: pyagent resume" in answered.stdout
    serve = app.start("serve", str(app.path), "--port", "0", "--storage", app.url, "--grace", "1")
    serve.wait_for(LISTENING.pattern)
    app.wait_calls("pay", timeout=30)
    assert serve.stop() == 0
    assert_finished_once(app, run_id)


def test_a_killed_waiting_run_answered_with_pyagent_approve_finishes_with_pyagent_resume(app: Any) -> None:
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    question_id = start_waiting_and_kill(app, run_id)
    assert_refusals(app, run_id, question_id)
    answered = app.cli("approve", run_id, question_id, "--answer", '{"approved": true}', "--by", "alice",
                       "--storage", app.url)
    assert answered.returncode == 0, answered.stderr
    replayed = app.cli("approve", run_id, question_id, "--answer", '{"approved": false}', "--storage", app.url)
    assert replayed.returncode == 1 and "was already answered by alice" in replayed.stderr
    resumed = app.cli("resume", run_id, str(app.path), "--storage", app.url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "COMPLETED" in resumed.stdout and "output: 'paid'" in resumed.stdout
    assert_finished_once(app, run_id)


def test_the_process_that_started_the_run_continues_it_when_another_process_answers(app: Any) -> None:
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    first = app.start("run", str(app.path), "--run-id", run_id, "--input", "7")
    found = first.wait_for(r"answer with: pyagent approve (\S+) (\w+) --answer JSON --storage (\S+)")
    assert found.group(1) == run_id and found.group(3) == app.url
    # The holder keeps the run's lease: nobody else can continue it meanwhile.
    held = app.cli("resume", run_id, str(app.path), "--storage", app.url)
    assert held.returncode == 2 and "is owned by" in held.stderr
    answered = app.cli("approve", run_id, found.group(2), "--answer", '{"approved": true}', "--by", "alice",
                       "--storage", app.url)
    assert answered.returncode == 0, answered.stderr
    assert "The run goes on in the process that holds it" in answered.stdout
    took = app.wait_calls("pay", timeout=30)
    assert took < 5
    assert first.proc.wait(60) == 0, first.output
    assert "COMPLETED" in first.output
    assert_finished_once(app, run_id)
