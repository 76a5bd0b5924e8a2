"""`pyagent history` and `pyagent resume` against a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pyagent.cli import main

FLOW = '''
import os
from pyagent.orchestrator import Task, Workflow

CALLS = []

def research(topic):
    CALLS.append("Research")
    return f"notes on {topic}"

def write(notes):
    CALLS.append("Write")
    if os.environ.get("WRITER_DOWN"):
        raise RuntimeError("writer is down")
    return f"article from {notes}"

report = Workflow(name="Research Report", steps=[
    Task(name="Research", agent=research),
    Task(name="Write", agent=write),
], checkpointing={"storage": STORE})
'''


def _flow(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(FLOW.replace("STORE", repr(url)))
    return path


def test_history_and_resume_from_the_command_line(mini_runtime: Any, tmp_path: Path, store_url: str,
                                                  monkeypatch: Any) -> None:
    flow = _flow(tmp_path, store_url)
    monkeypatch.setenv("WRITER_DOWN", "1")
    first = CliRunner().invoke(main, ["run", str(flow), "--input", "AI", "--json"])
    assert first.exit_code == 1, first.output
    run_id = json.loads(first.output)["run_id"]

    listed = CliRunner().invoke(main, ["history", "--storage", store_url])
    assert listed.exit_code == 0, listed.output
    assert run_id in listed.output and "failed" in listed.output and "tasks 1/2" in listed.output
    assert "error: task 'Write' failed: RuntimeError: writer is down" in listed.output

    only_done = CliRunner().invoke(main, ["history", "--storage", store_url, "--status", "completed"])
    assert only_done.output.strip() == "No runs found."

    monkeypatch.delenv("WRITER_DOWN")
    resumed = CliRunner().invoke(main, ["resume", run_id, f"{flow}", "--storage", store_url])
    assert resumed.exit_code == 0, resumed.output
    assert "1 task done, 1 to go" in resumed.output
    assert "= Research (completed earlier, output reused)" in resumed.output
    assert "COMPLETED" in resumed.output and "article from notes on AI" in resumed.output

    data = json.loads(CliRunner().invoke(main, ["history", "--storage", store_url, "--json",
                                                "--workflow", "Research Report"]).output)
    assert [(d["run_id"], d["status"], d["tasks_completed"]) for d in data] == [(run_id, "completed", 2)]
    research = next(t for t in data[0]["tasks"] if t["name"] == "Research")
    assert research["reused"] is True


def test_cli_errors_are_clear(mini_runtime: Any, tmp_path: Path, store_url: str) -> None:
    flow = _flow(tmp_path, store_url)
    missing = CliRunner().invoke(main, ["resume", "nope", str(flow), "--storage", store_url])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output
    run_id = json.loads(CliRunner().invoke(main, ["run", str(flow), "--input", "AI", "--json"]).output)["run_id"]
    other = tmp_path / "other.py"
    other.write_text("from pyagent.orchestrator import Task, Workflow\n"
                     "flow = Workflow(name='Other', steps=[Task(name='Research', agent=lambda x: x)])\n")
    wrong = CliRunner().invoke(main, ["resume", run_id, f"{other}:flow", "--storage", store_url])
    assert wrong.exit_code == 2 and "holds a run of workflow 'Research Report', not 'Other'" in wrong.output
    assert "Resuming" not in wrong.output  # refused before it said it was resuming
    bad_since = CliRunner().invoke(main, ["history", "--storage", store_url, "--since", "last week"])
    assert bad_since.exit_code == 2 and "ISO date" in bad_since.output
    unknown = CliRunner().invoke(main, ["history", "--storage", "nosuch://x"])
    assert unknown.exit_code == 2 and "unknown store 'nosuch'" in unknown.output
    for limit in ("-1", "99999999999999999999999"):
        odd = CliRunner().invoke(main, ["history", "--storage", store_url, "--limit", limit])
        assert (odd.exit_code, limit) == ((2, "-1") if limit == "-1" else (0, limit)), odd.output
    assert "limit=-1 is not a number of runs" in CliRunner().invoke(
        main, ["history", "--storage", store_url, "--limit", "-1"]).output
    needs_storage = CliRunner().invoke(main, ["history"])
    assert needs_storage.exit_code == 2 and "--storage" in needs_storage.output


def test_history_shows_runs_it_cannot_read_and_lists_the_others(
        mini_runtime: Any, tmp_path: Path, store_url: str, monkeypatch: Any) -> None:
    import pytest

    pytest.importorskip("cryptography")
    from cryptography.fernet import Fernet

    flow = _flow(tmp_path, store_url)
    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    other = json.loads(CliRunner().invoke(main, ["run", str(flow), "--input", "AI", "--json"]).output)["run_id"]
    monkeypatch.setenv("PYAGENT_STATE_KEY", Fernet.generate_key().decode())
    mine = json.loads(CliRunner().invoke(main, ["run", str(flow), "--input", "AI", "--json"]).output)["run_id"]

    listed = CliRunner().invoke(main, ["history", "--storage", store_url])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert any(mine in line and "tasks 2/2" in line for line in lines)
    assert any(other in line and "(unreadable)" in line for line in lines)
    assert "unreadable: history of run" in listed.output and "could not be decrypted" in listed.output
    data = json.loads(CliRunner().invoke(main, ["history", "--storage", store_url, "--json"]).output)
    assert {d["run_id"]: d["unreadable"] is None for d in data} == {mine: True, other: False}


def test_history_and_resume_read_the_storage_setting_when_no_storage_is_given(tmp_path: Path) -> None:
    """`storage` in pyagent.toml (or PYAGENT_STORAGE) is where `pyagent history` and `pyagent
    resume` look without --storage, as the configuration page says."""
    import os
    import subprocess
    import sys

    import pytest

    pytest.importorskip("pyagent_sql", reason="needs a store that outlives the process: pyagent-sql")
    flow = _flow(tmp_path, "sqlite://runs.db")
    (tmp_path / "pyagent.toml").write_text('storage = "sqlite://runs.db"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYAGENT_STORAGE"}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pyagent.cli", *args], cwd=tmp_path, text=True,
                              capture_output=True, env={**env, **extra}, timeout=120)

    first = cli("run", str(flow), "--input", "AI", "--json", WRITER_DOWN="1")
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    listed = cli("history")
    assert listed.returncode == 0 and run_id in listed.stdout and "failed" in listed.stdout, listed.stderr
    resumed = cli("resume", run_id, str(flow))
    assert resumed.returncode == 0 and "COMPLETED" in resumed.stdout, resumed.stderr
    (tmp_path / "pyagent.toml").unlink()
    nowhere = cli("history")
    assert nowhere.returncode == 2 and "pass --storage URL" in nowhere.stderr, nowhere.stderr
