"""``pyagent serve``: finding the orchestrator in a file (serving itself is tested in subprocesses
in the repository's tests/test_serve_process.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pyagent.cli import main


def test_serve_names_what_is_wrong_with_the_file(tmp_path: Path, mini_runtime: Any) -> None:
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    out = CliRunner().invoke(main, ["serve", str(none)])
    assert out.exit_code != 0 and "defines no Orchestrator" in out.output
    two = tmp_path / "two.py"
    two.write_text("from pyagent.orchestrator import Orchestrator\na = Orchestrator()\nb = Orchestrator()\n")
    out = CliRunner().invoke(main, ["serve", str(two)])
    assert out.exit_code != 0 and "several orchestrators (a, b)" in out.output
    out = CliRunner().invoke(main, ["serve", f"{two}:c"])
    assert out.exit_code != 0 and "no orchestrator 'c' (orchestrators: a, b)" in out.output
    out = CliRunner().invoke(main, ["serve", str(tmp_path / "missing.py")])
    assert out.exit_code != 0 and "no such file" in out.output


def test_serve_refuses_bad_options(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("from pyagent.orchestrator import Orchestrator\norchestrator = Orchestrator()\n")
    assert "Invalid value for '--port'" in CliRunner().invoke(main, ["serve", str(app), "--port", "70000"]).output
    assert "Invalid value for '--grace'" in CliRunner().invoke(main, ["serve", str(app), "--grace", "-1"]).output
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert all(flag in help_text for flag in ("--host", "--port", "--storage", "--grace"))
