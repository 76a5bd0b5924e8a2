"""Errors from the command line are one clean line; exit code 2 for configuration, 1 for a failed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def pyagent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyagent.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


DUPLICATE = """\
from pyagent import Task, Workflow

wf = Workflow(name="w", steps=[Task(name="a", agent=lambda x: x),
                               Task(name="a", agent=lambda x: x)])
"""


def test_a_workflow_refused_when_built_is_one_line_with_its_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "dup.py", DUPLICATE)
    out = pyagent("run", "dup.py", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "Error: dup.py:3: invalid Workflow: duplicate task name 'a' in workflow 'w': task names must "
        "be unique because results are kept by name; rename one"]
    assert "Traceback" not in out.stderr + out.stdout


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "syn.py", "from pyagent import Workflow\n\nwf = Workflow(name='w'\nx = 1\n")
    out = pyagent("run", "syn.py", cwd=tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("Error: syn.py:3: SyntaxError: '(' was never closed")
    assert "Traceback" not in out.stderr


def test_an_import_error_in_the_file_points_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "imp.py", "import os\nimport no_such_module_here\n")
    out = pyagent("run", "imp.py", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("Error: imp.py:2: ModuleNotFoundError: No module named "
                                  "'no_such_module_here'")


def test_traceback_shows_the_full_trace(tmp_path: Path) -> None:
    write(tmp_path, "dup.py", DUPLICATE)
    for args in (["--traceback", "run", "dup.py"], ["run", "dup.py", "--traceback"]):
        out = pyagent(*args, cwd=tmp_path)
        assert out.returncode != 0
        assert "Traceback (most recent call last)" in out.stderr
        assert "ValidationError" in out.stderr and "dup.py" in out.stderr


@pytest.mark.parametrize(("source", "code"), [
    ("wf = Workflow(name='w', pattern='sequentail', steps=[Task(name='a', agent=lambda x: x)])", 2),
    ("wf = Workflow(name='w', steps=[Task(name='a', agent=lambda x: x), Task(name='a', agent=lambda x: x)])", 2),
    ("x = (", 2),
])
def test_traceback_keeps_the_exit_code(tmp_path: Path, source: str, code: int) -> None:
    # Scripts tell a configuration error from a failed run by the exit code, with or without it.
    write(tmp_path, "cfg.py", "from pyagent import Task, Workflow\n" + source + "\n")
    plain = pyagent("run", "cfg.py", cwd=tmp_path)
    traced = pyagent("run", "cfg.py", "--traceback", cwd=tmp_path)
    assert plain.returncode == traced.returncode == code, (plain.stderr, traced.stderr)
    assert "Traceback (most recent call last)" in traced.stderr
    assert traced.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]  # the same Error: line


@pytest.mark.parametrize(("source", "expected"), [
    ("wf = Workflow(name='w', pattern='sequentail', steps=[Task(name='a', agent=lambda x: x)])",
     "Error: unknown pattern 'sequentail'; did you mean 'sequential'?"),
    ("wf = Workflow(name='w', pattern='zigzag', steps=[Task(name='a', agent=lambda x: x)])",
     "Error: unknown pattern 'zigzag'"),
])
def test_configuration_errors_exit_2_before_anything_runs(tmp_path: Path, source: str,
                                                           expected: str) -> None:
    write(tmp_path, "cfg.py", "from pyagent import Task, Workflow\n" + source + "\n")
    out = pyagent("run", "cfg.py", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(expected)
    assert out.stdout == ""  # not even the "Running workflow" line: nothing ran


def test_a_missing_file_and_a_bad_option_exit_2(tmp_path: Path) -> None:
    assert pyagent("run", "nope.py", cwd=tmp_path).stderr.strip() == "Error: no such file: nope.py"
    assert pyagent("run", "nope.py", cwd=tmp_path).returncode == 2
    assert pyagent("history", "--limit", "many", cwd=tmp_path).returncode == 2


def test_a_failed_run_exits_1_with_its_error(tmp_path: Path) -> None:
    write(tmp_path, "fail.py", "from pyagent import Task, Workflow\n"
                               "wf = Workflow(name='w', pattern='mini', steps=[Task(name='a', agent=lambda x: 1 / 0)])\n"
                               "from pyagent.plugins import get_runtime\n"
                               "from pyagent import hookimpl\n"
                               "class P:\n"
                               "    async def execute(self, run):\n"
                               "        return (await run.run_step(run.workflow.steps[0], run.input)).output\n"
                               "class Plugin:\n"
                               "    @hookimpl\n"
                               "    def pyagent_register_patterns(self, register):\n"
                               "        register('mini', P())\n"
                               "get_runtime().register(Plugin(), 'mini')\n")
    out = pyagent("run", "fail.py", cwd=tmp_path)
    assert out.returncode == 1
    assert "FAILED" in out.stdout and "ZeroDivisionError: division by zero" in out.stdout
    assert "1 step)" in out.stdout  # not "1 steps"


@pytest.mark.parametrize("run_id", ["", "bad\udcffid"])
def test_a_run_id_no_store_can_keep_is_refused_before_anything_runs(tmp_path: Path, run_id: str) -> None:
    write(tmp_path, "flow.py", "from pyagent import Task, Workflow\n"
                               "wf = Workflow(name='w', pattern='mini', steps=[Task(name='a', agent=lambda x: x)])\n"
                               "from pyagent.plugins import get_runtime\n"
                               "from pyagent import hookimpl\n"
                               "class P:\n"
                               "    async def execute(self, run):\n"
                               "        return (await run.run_step(run.workflow.steps[0], run.input)).output\n"
                               "class Plugin:\n"
                               "    @hookimpl\n"
                               "    def pyagent_register_patterns(self, register):\n"
                               "        register('mini', P())\n"
                               "get_runtime().register(Plugin(), 'mini')\n")
    arg = run_id.encode("utf-8", "surrogateescape")  # as a shell passes bytes that are not UTF-8
    out = subprocess.run([sys.executable, "-m", "pyagent.cli", "run", "flow.py", "--run-id", arg],  # type: ignore[list-item]
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""  # not even "Running workflow ..."
    assert out.stderr.startswith("Error: run_id "), out.stderr
    assert "choose another run id" in out.stderr or "must be a non-empty string" in out.stderr, out.stderr
