"""Seed §5.1-5.3, §6.1, §6.2, §8.1, §8.3 with the real plugins: sequential pattern, SQL stores.

The kill-and-resume test runs a real child process, kills it with SIGKILL in the middle of
a task, and resumes the run by id in this process: no completed task runs again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyagent.orchestrator import ExecutionPattern, Orchestrator, Task, TaskStatus, Workflow

pytest.importorskip("pyagent_sql")

POSTGRES = os.environ.get("PYAGENT_TEST_POSTGRES_URL")

CHILD = '''
import os, signal, sys
from pathlib import Path
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

log = Path(sys.argv[3])

def step(name):
    def agent(value):
        with log.open("a") as fh:
            fh.write(name + "\\n")
        if name == "t3":
            os.kill(os.getpid(), signal.SIGKILL)
        return value + [name]
    agent.__name__ = name
    return agent

workflow = Workflow(name="Long Running Process", pattern=ExecutionPattern.SEQUENTIAL,
                    steps=[Task(name=f"t{i}", agent=step(f"t{i}")) for i in range(6)],
                    checkpointing={"enabled": True, "interval": "after_each_task", "storage": sys.argv[1]})
workflow.run_sync([], run_id=sys.argv[2])
'''


def storages() -> list[Any]:
    params: list[Any] = ["sqlite://checkpoints.db"]
    params.append(pytest.param(POSTGRES, id="postgresql",
                               marks=pytest.mark.skipif(not POSTGRES, reason="PYAGENT_TEST_POSTGRES_URL not set")))
    return params


def calls_logged(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("storage", storages())
def test_sigkilled_run_resumes_by_run_id_without_rerunning_completed_tasks(
        runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str,
        own_schema: Any) -> None:
    storage = own_schema(storage)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "calls.log"
    run_id = f"killed-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([sys.executable, str(script), storage, run_id, str(log)], timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert calls_logged(log) == ["t0", "t1", "t2", "t3"]

    history = Orchestrator(store=storage).get_history(workflow="Long Running Process", status="running")
    killed = next(e for e in history if e.run_id == run_id)
    assert killed.tasks_completed == 3 and killed.tasks_total == 6

    log.unlink()
    ran: list[str] = []

    def step(name: str) -> Any:
        def agent(value: list[str]) -> list[str]:
            ran.append(name)
            return [*value, name]

        agent.__name__ = name
        return agent

    workflow = Workflow(name="Long Running Process", pattern=ExecutionPattern.SEQUENTIAL,
                        steps=[Task(name=f"t{i}", agent=step(f"t{i}")) for i in range(6)],
                        checkpointing={"enabled": True, "interval": "after_each_task", "storage": storage})
    result = workflow.resume_from(run_id)
    assert result.ok, result.error
    assert ran == ["t3", "t4", "t5"]  # the task in flight at the kill runs again; none other
    assert result.output == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert [n for n, t in result.tasks.items() if t.reused] == ["t0", "t1", "t2"]
    done = Orchestrator(store=storage).get_history(workflow="Long Running Process", status="completed")
    assert run_id in [e.run_id for e in done]


def test_seed_6_2_checkpointing_as_written_with_sqlite(runtime: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    workflow = Workflow(
        name="Long Running Process",
        checkpointing={
            "enabled": True,
            "interval": "after_each_task",  # or "every_5_minutes"
            "storage": "sqlite://checkpoints.db"
        },
        steps=[Task(name="Extract", agent=lambda x: [1, 2]), Task(name="Load", agent=lambda rows: len(rows))],
    )
    result = workflow.run_sync()
    assert result.ok and result.output == 2
    assert (tmp_path / "checkpoints.db").exists()  # relative to the working directory, as the seed writes it
    history = Orchestrator(store="sqlite://checkpoints.db").get_history(workflow="Long Running Process")
    assert [(e.run_id, e.status, e.tasks_completed) for e in history] == [(result.run_id, TaskStatus.COMPLETED, 2)]


def test_seed_sections_5_6_8_together(runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    attempts = {"n": 0}

    def my_agent(x: Any) -> str:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("blip")
        return f"{x} researched"

    def primary_agent(x: Any) -> str:
        raise RuntimeError("primary down")

    def backup_agent(x: Any) -> str:
        return f"{x}, analysed by backup"

    writer_down = {"on": True}

    def writer(x: Any) -> str:
        if writer_down["on"]:
            raise RuntimeError("writer down")
        return f"{x}, written"

    workflow = Workflow(
        name="Research Report",
        pattern=ExecutionPattern.SEQUENTIAL,
        steps=[
            Task(name="Research", agent=my_agent, retry_config={
                "max_retries": 3, "backoff": "exponential", "initial_delay": 0.01, "max_delay": 30.0}),
            Task(name="Analyze", agent=primary_agent, fallback_agent=backup_agent, fallback_strategy="substitute"),
            Task(name="Write", agent=writer),
        ],
        circuit_breaker={"failure_threshold": 5, "reset_timeout": 60, "half_open_requests": 3},
        checkpointing={"enabled": True, "interval": "after_each_task", "storage": "sqlite://checkpoints.db"},
    )
    orchestrator = Orchestrator()
    orchestrator.add_workflow(workflow)
    first = workflow.run_sync("AI")
    assert first.status is TaskStatus.FAILED

    state = workflow.get_state()
    assert state.completed == ["Research", "Analyze"] and state.failed == ["Write"]
    state.save("workflow_state.json")
    writer_down["on"] = False
    resumed = workflow.resume_from("workflow_state.json")
    assert resumed.ok and resumed.output == "AI researched, analysed by backup, written"
    assert attempts["n"] == 2  # Research was not run again

    metrics = workflow.get_metrics()
    assert metrics.total_executions == 2 and metrics.success_rate == 0.5
    assert metrics.task_breakdown["Research"].retries == 1
    assert metrics.circuit_state == "closed"

    history = orchestrator.get_history(workflow="Research Report", since="2026-01-01")
    assert [e.status for e in history] == [TaskStatus.COMPLETED]  # one run id, resumed to completion
    assert history[0].resumed
