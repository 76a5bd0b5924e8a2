"""Install hints are honest: they name only distributions this repository has, and say how to get
them from a clone; a misspelled name is a "did you mean", not "not installed"."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pyagent import Task, Workflow
from pyagent.errors import PluginNotInstalledError, install_hint
from pyagent.plugins import KNOWN_DISTRIBUTIONS, Runtime

ROOT = Path(__file__).resolve().parents[1]


def _distributions() -> dict[str, str]:
    """Distribution name -> its folder under plugins/."""
    out = {}
    for pyproject in ROOT.glob("plugins/*/pyproject.toml"):
        out[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent.name
    return out


HINTED = sorted({(kind, name, dist) for kind, table in KNOWN_DISTRIBUTIONS.items()
                 for name, dist in table.items()})


@pytest.mark.parametrize(("kind", "name", "dist"), HINTED)
def test_every_hinted_distribution_is_in_this_repository(kind: str, name: str, dist: str) -> None:
    folders = _distributions()
    assert dist in folders, f"{kind} {name!r} is hinted as {dist}, which plugins/ does not have"
    assert folders[dist] == dist.removeprefix("pyagent-"), "the hint's ./plugins/<folder> would be wrong"


@pytest.mark.parametrize(("kind", "name", "dist"), HINTED)
def test_every_hinted_name_is_provided_by_its_distribution(runtime: Runtime, kind: str, name: str,
                                                            dist: str) -> None:
    if kind in ("store", "executor"):
        provided = set(runtime.driver_names(kind + "s")) | set(runtime.registry(kind + "s"))
        assert name in provided
    else:
        reg = runtime.registry(kind + "s")[name]
        assert runtime.plugins[reg.plugin].distribution == dist


def test_a_missing_plugin_names_how_to_install_it_from_a_clone() -> None:
    hint = install_hint("pyagent-debate")
    assert "pip install pyagent-debate" in hint
    assert "pip install ./plugins/debate" in hint
    assert "nox -s wheels" in hint and "pip install --find-links dist pyagent-debate" in hint


def test_a_misspelled_pattern_is_a_did_you_mean(runtime: Runtime) -> None:
    wf = Workflow(name="w", pattern="sequentail", steps=[Task(name="a", agent=lambda x: x)])
    with pytest.raises(PluginNotInstalledError) as info:
        wf.run_sync("x")
    message = str(info.value)
    assert "unknown pattern 'sequentail'; did you mean 'sequential'?" in message
    assert "not installed" not in message


@pytest.mark.parametrize(("kind", "typo", "meant"), [
    ("router", "keywrod", "keyword"), ("pattern", "chain-of-thought", "chain_of_thought"),
    ("store", "sqlit", "sqlite"), ("executor", "locl", "local"),
])
def test_misspellings_of_every_kind(runtime: Runtime, kind: str, typo: str, meant: str) -> None:
    with pytest.raises(PluginNotInstalledError, match=f"unknown {kind} '{typo}'; did you mean '{meant}'"):
        if kind in ("store", "executor"):
            runtime.driver(kind + "s", typo)
        else:
            runtime.lookup(kind, typo)


def test_a_name_no_distribution_provides_says_so(runtime: Runtime) -> None:
    with pytest.raises(PluginNotInstalledError, match="no pyagent distribution provides one") as info:
        runtime.lookup("trigger", "carrier-pigeon")
    assert "pip install" not in str(info.value)
