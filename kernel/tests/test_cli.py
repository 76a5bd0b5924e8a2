"""The pyagent command: plugins listing and running a workflow from a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pyagent.cli import main
from pyagent.plugins import PluginFailure

FLOW = '''
from pyagent.orchestrator import Task, Workflow

def research(topic):
    return f"notes on {topic}"

def write(notes):
    return f"article from {notes}"

report = Workflow(name="Research Report", steps=[
    Task(name="Research", agent=research),
    Task(name="Write", agent=write),
])
'''


def test_plugins_lists_providers_drivers_and_failures(mini_runtime: Any) -> None:
    mini_runtime.failures.append(PluginFailure("broken", "pyagent-broken", "ImportError: no libfoo"))
    out = CliRunner().invoke(main, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "mini" in out.output and "patterns: sequential" in out.output
    assert "memory" in out.output and "local" in out.output
    assert "Failed to load:" in out.output and "broken (pyagent-broken): ImportError: no libfoo" in out.output
    data = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    assert data["failures"][0]["name"] == "broken"
    assert {"name": "mini", "distribution": None, "version": None, "provides": {"patterns": ["sequential"]}} in data["plugins"]


def test_run_shows_progress_and_result(mini_runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    out = CliRunner().invoke(main, ["run", str(path), "--input", '"AI"'])
    assert out.exit_code == 0, out.output
    assert "Running workflow 'Research Report'" in out.output
    assert "✓ Research" in out.output and "✓ Write" in out.output
    assert "output: 'article from notes on AI'" in out.output
    by_var = CliRunner().invoke(main, ["run", f"{path}:report", "--json", "--input", "x"])
    assert json.loads(by_var.output)["output"] == "article from notes on x"
    by_name = CliRunner().invoke(main, ["run", f"{path}:Research Report", "--quiet"])
    assert by_name.exit_code == 0 and "COMPLETED" in by_name.output


def test_run_errors_are_clear(mini_runtime: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    assert "no such file" in runner.invoke(main, ["run", str(tmp_path / "nope.py")]).output
    two = tmp_path / "two.py"
    two.write_text(FLOW + "\nother = Workflow(name='Other', steps=[Task(name='x', agent=research)])\n")
    out = runner.invoke(main, ["run", str(two)])
    assert out.exit_code != 0 and "defines several workflows (report, other)" in out.output
    assert "has no workflow 'missing'" in runner.invoke(main, ["run", f"{two}:missing"]).output
    failing = tmp_path / "failing.py"
    failing.write_text("from pyagent.orchestrator import Task, Workflow\n"
                       "wf = Workflow(name='f', steps=[Task(name='boom', agent=lambda x: 1/0)])\n")
    out = runner.invoke(main, ["run", str(failing)])
    assert out.exit_code == 1 and "✗ boom" in out.output and "ZeroDivisionError" in out.output


def test_run_without_pattern_plugin_says_what_to_install(bare_runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    out = CliRunner().invoke(main, ["run", str(path)])
    assert out.exit_code != 0
    assert "pip install pyagent-sequential" in out.output


def test_run_progress_shows_cancelled_tasks_and_fallbacks(drt: Any, tmp_path: Path) -> None:
    path = tmp_path / "fan.py"
    path.write_text(
        "import anyio\n"
        "from pyagent.orchestrator import Task, Workflow\n"
        "async def hang(x):\n    await anyio.sleep_forever()\n"
        "async def boom(x):\n    await anyio.sleep(0)\n    raise RuntimeError('source down')\n"
        "wf = Workflow(name='fan', pattern='fan', steps=[Task(name='hang', agent=hang), Task(name='boom', agent=boom)])\n"
    )
    out = CliRunner().invoke(main, ["run", str(path)])
    assert out.exit_code == 1
    assert "▶ hang" in out.output and "✗ boom" in out.output
    assert "hang cancelled" in out.output  # a started task never just disappears from the progress
    backup = tmp_path / "backup.py"
    backup.write_text(
        "from pyagent.orchestrator import Task, Workflow\n"
        "def primary(x):\n    raise ConnectionError('primary down')\n"
        "def spare(x):\n    return 'spare answer'\n"
        "wf = Workflow(name='b', steps=[Task(name='ask', agent=primary, fallback_agent=spare)])\n"
    )
    out = CliRunner().invoke(main, ["run", str(backup)])
    assert out.exit_code == 0, out.output
    assert "ask failed (ConnectionError: primary down), falling back to spare" in out.output


def test_run_prints_its_run_id_before_any_task_and_takes_one(mini_runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    out = CliRunner().invoke(main, ["run", str(path), "--input", '"AI"'])
    first = out.output.splitlines()[0]
    chosen = first.rsplit("run_id=", 1)[1]
    assert first.startswith("Running workflow 'Research Report' (sequential, 2 steps), run_id=")
    assert f"run_id={chosen}" in out.output.split("COMPLETED", 1)[1]  # the same run, at the end
    given = CliRunner().invoke(main, ["run", str(path), "--input", '"AI"', "--run-id", "nightly-7",
                                      "--json"])
    assert json.loads(given.output)["run_id"] == "nightly-7"



def test_an_unknown_command_is_still_unknown_with_plugin_commands(bare_runtime: Any) -> None:
    unknown = CliRunner().invoke(main, ["no-such-command"])
    assert unknown.exit_code == 2 and "No such command 'no-such-command'" in unknown.output
