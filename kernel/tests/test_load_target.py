"""load_target: what a FILE[:NAME] given to a serving command defines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import click
import pytest

from pyagent.plugin import load_target

FILE = '''
from pyagent import agent
from pyagent.orchestrator import Orchestrator, Task, Workflow

upper = agent(lambda x: str(x).upper(), name="upper", description="Shouts")
lower = agent(lambda x: str(x).lower(), name="lower")
shout = Workflow(name="Shout", steps=[Task(name="up", agent=upper)])
whisper = Workflow(name="Whisper", steps=[Task(name="down", agent=lower)])
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(text)
    return path


def test_a_file_gives_its_workflows_and_agents(tmp_path: Path) -> None:
    target = load_target(str(write(tmp_path, FILE)))
    assert list(target.workflows) == ["Shout", "Whisper"]
    assert sorted(target.agents) == ["lower", "upper"]
    assert target.orchestrator is None


def test_a_name_picks_one_workflow_or_agent(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    assert list(load_target(f"{path}:whisper").workflows) == ["Whisper"]
    assert list(load_target(f"{path}:Shout").workflows) == ["Shout"]
    only = load_target(f"{path}:upper")
    assert list(only.agents) == ["upper"] and only.workflows == {}
    with pytest.raises(click.ClickException, match="no orchestrator, workflow or agent named 'nope'"):
        load_target(f"{path}:nope")


def test_an_orchestrator_runs_its_own_workflows(tmp_path: Path, chain_runtime: Any) -> None:
    path = write(tmp_path, FILE + '''
seen = []
orchestrator = Orchestrator(monitors=[seen.append])
orchestrator.add_workflow(shout)
''')
    target = load_target(str(path))
    assert target.orchestrator is not None and list(target.workflows) == ["Shout"]
    result = anyio.run(lambda: target.run(target.workflows["Shout"], "hi", run_id="r1"))
    assert result.output == "HI" and result.run_id == "r1"
    assert any(e.kind == "workflow.completed" for e in target.module.seen)  # its monitors saw it


def test_a_file_without_workflows_or_agents_is_refused(tmp_path: Path) -> None:
    with pytest.raises(click.ClickException, match="defines no workflow or agent"):
        load_target(str(write(tmp_path, "x = 1\n")))
    with pytest.raises(click.ClickException, match="no such file"):
        load_target(str(tmp_path / "missing.py"))
