"""A pattern plugin written as a third party would: installed into a fresh venv, used by name."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "pyagent-race"

SCRIPT = textwrap.dedent(
    """
    import anyio
    from pyagent.orchestrator import Task, Workflow, TaskStatus
    from pyagent.plugin import get_runtime

    async def slow(x):
        await anyio.sleep(30)
        return "slow"

    async def fast(x):
        await anyio.sleep(0.01)
        return f"fast:{x}"

    def broken(x):
        raise RuntimeError("provider down")

    wf = Workflow(name="hedged", pattern="race", steps=[
        Task(name="slow", agent=slow), Task(name="broken", agent=broken), Task(name="fast", agent=fast),
    ])
    result = anyio.run(wf.run, "q")
    assert result.ok, result.error
    assert result.output == "fast:q", result.output
    assert result.tasks["slow"].status is TaskStatus.CANCELLED
    assert result.tasks["broken"].status is TaskStatus.FAILED
    info = get_runtime().plugins["race"]
    print("OK", info.distribution, info.provides)
    """
)


@pytest.mark.slow
def test_third_party_pattern_installs_and_runs_by_name(fresh_venv: Callable[[str], Any], tmp_path: Path) -> None:
    venv = fresh_venv("venv")
    venv.install(str(FIXTURE))
    out = venv.run(venv.bin("python"), "-c", SCRIPT, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OK pyagent-race {'patterns': ['race']}" in out.stdout
    listing = venv.run(venv.bin("pyagent"), "plugins", cwd=tmp_path, timeout=60)
    assert "race" in listing.stdout and "pyagent-race 0.1.0" in listing.stdout


def test_fixture_pattern_validates_before_running(tmp_path: Path) -> None:
    """The fixture's own validation runs before any agent (checked in-process, no install)."""
    sys.path.insert(0, str(FIXTURE / "src"))
    try:
        from pyagent_race import RacePattern

        from pyagent import ConfigurationError
        from pyagent.orchestrator import Task, Workflow

        with pytest.raises(ConfigurationError, match="needs at least two steps"):
            RacePattern().validate(Workflow(name="w", pattern="race", steps=[Task(name="a", agent=lambda x: x)]))
    finally:
        sys.path.remove(str(FIXTURE / "src"))
        sys.modules.pop("pyagent_race", None)
