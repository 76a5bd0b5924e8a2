"""Kill a checkpointed run from outside with SIGKILL, then resume it by run id in a new process.

Real processes, real stores (an SQLite file named the way the seed writes it, and PostgreSQL
when PYAGENT_TEST_POSTGRES_URL is set). Every task appends its name to a side-effect file
when it completes; the test waits for a task to announce that it has started, kills the
process, resumes the run in a second process and then counts: every task ran exactly once
(the one in flight at the kill had not completed, so running it again is not a re-run), and
the outputs of the tasks that completed before the kill flow into the resumed ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyagent_sql")
pytest.importorskip("pyagent_sequential")

TASKS = 30
KILL_AT = 17  # this task announces itself and then hangs until it is killed
KILL_AGAIN = 24  # where a resumed run is killed in the kill-twice case

CHILD = """
import json, sys, threading
from pathlib import Path
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

storage, run_id, effects, mode, retention = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5]

def step(i):
    name = f"t{i:02d}"
    def agent(done):
        if (mode == "first" and i == @KILL_AT@) or (mode == "again" and i == @KILL_AGAIN@):
            print("STARTED", name, flush=True)
            threading.Event().wait()  # in flight until the SIGKILL
        with effects.open("a") as fh:  # the side effect, once the task's work is done
            fh.write(name + "\\n")
        return done + [name]
    agent.__name__ = name
    return agent

checkpointing = {"enabled": True, "interval": "after_each_task", "storage": storage}
if retention != "none":
    checkpointing["retention"] = int(retention)
workflow = Workflow(name="Kill And Resume", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i:02d}", agent=step(i)) for i in range(@TASKS@)],
                    checkpointing=checkpointing)
if mode == "first":
    workflow.run_sync([], run_id=run_id)
    print("FINISHED", flush=True)  # never reached: the parent kills this process first
elif mode == "again":
    workflow.resume_from(run_id)
    print("FINISHED", flush=True)  # never reached either
else:
    result = workflow.resume_from(run_id)
    reused = [name for name, rec in result.tasks.items() if rec.reused]
    print(json.dumps({"ok": result.ok, "error": result.error, "output": result.output, "reused": reused}))
""".replace("@KILL_AT@", str(KILL_AT)).replace("@KILL_AGAIN@", str(KILL_AGAIN)).replace("@TASKS@", str(TASKS))


def _postgres_url() -> str | None:
    return os.environ.get("PYAGENT_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite://checkpoints.db"  # as the seed writes it: relative to the child's cwd
        return
    base = _postgres_url()
    if not base:
        pytest.skip("PYAGENT_TEST_POSTGRES_URL is not set: no PostgreSQL server to run against "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test; CI sets it)")
    schema = f"pyagent_kill_{uuid.uuid4().hex[:10]}"
    yield base + ("&" if "?" in base else "?") + f"schema={schema}"
    asyncio.run(_drop_schema(base.split("?", 1)[0], schema))


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The first stdout line starting with ``prefix``; fails if the process ends or time runs out."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {prefix!r} line from the child within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child ended before printing {prefix!r}: {proc.wait()} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if line.startswith(prefix):
            return line


@pytest.mark.parametrize("retention", ["none", "4"], ids=["keep-all", "retention-4"])
def test_a_sigkilled_run_resumes_in_a_new_process_with_every_task_run_exactly_once(
    storage: str, retention: str, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    effects = tmp_path / "effects.log"
    run_id = f"kill-{uuid.uuid4().hex[:10]}"
    args = [sys.executable, str(script), storage, run_id, str(effects)]

    first = subprocess.Popen([*args, "first", retention], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = _wait_for_line(first, "STARTED", timeout=60)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(30)
    assert started.split() == ["STARTED", f"t{KILL_AT:02d}"]
    assert first.returncode == -signal.SIGKILL
    done_before = [f"t{i:02d}" for i in range(KILL_AT)]
    assert effects.read_text().split() == done_before

    second = subprocess.run([*args, "resume", retention], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr
    outcome = json.loads(second.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome["error"]
    every = [f"t{i:02d}" for i in range(TASKS)]
    ran = Counter(effects.read_text().split())
    assert sorted(ran) == every  # none lost
    assert set(ran.values()) == {1}  # none ran twice
    assert outcome["reused"] == done_before  # completed tasks came from the checkpoints
    assert outcome["output"] == every  # and their outputs fed the tasks after them
    if storage.startswith("sqlite"):
        assert (tmp_path / "checkpoints.db").is_file()


def _run_and_kill(args: list[str], cwd: Path, at: int) -> None:
    proc = subprocess.Popen(args, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = _wait_for_line(proc, "STARTED", timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert started.split() == ["STARTED", f"t{at:02d}"]
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("retention", ["none", "4"], ids=["keep-all", "retention-4"])
def test_a_resumed_run_killed_again_loses_nothing_on_the_second_resume(
    storage: str, retention: str, tmp_path: Path
) -> None:
    """Killed, resumed, killed again: the tasks done before the first kill must still count."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    effects = tmp_path / "effects.log"
    run_id = f"kill2-{uuid.uuid4().hex[:10]}"
    args = [sys.executable, str(script), storage, run_id, str(effects)]

    _run_and_kill([*args, "first", retention], tmp_path, KILL_AT)
    _run_and_kill([*args, "again", retention], tmp_path, KILL_AGAIN)
    assert effects.read_text().split() == [f"t{i:02d}" for i in range(KILL_AGAIN)]

    last = subprocess.run([*args, "resume", retention], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120)
    assert last.returncode == 0, last.stderr
    outcome = json.loads(last.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome["error"]
    every = [f"t{i:02d}" for i in range(TASKS)]
    ran = Counter(effects.read_text().split())
    assert sorted(ran) == every
    assert set(ran.values()) == {1}, {k: v for k, v in ran.items() if v > 1}
    assert outcome["reused"] == [f"t{i:02d}" for i in range(KILL_AGAIN)]
    assert outcome["output"] == every
