"""Meta-tests: every hook is documented, tested, and described in its spec."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pyagent import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if name.startswith("pyagent_") and callable(fn))


def test_there_are_hooks_of_every_kind() -> None:
    assert set(hookspecs.HOOK_KINDS) == set(HOOKS)
    assert set(hookspecs.HOOK_KINDS.values()) == {
        "executors", "patterns", "routers", "stores", "monitors", "triggers", "models"}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_documented_heading(hook: str) -> None:
    doc = (ROOT / "docs" / "hooks.md").read_text()
    assert re.search(rf"^### {hook}$", doc, re.M), f"docs/hooks.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    sources = "\n".join(p.read_text() for p in ROOT.glob("**/tests/**/test_*.py") if ".nox" not in p.parts)
    assert f"def test_hook_{hook}(" in sources, f"no test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_is_typed_and_says_how_it_is_called(hook: str) -> None:
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn) or ""
    assert "Called" in doc, f"{hook}'s docstring does not say how it is called"
    sig = inspect.signature(fn)
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    assert sig.return_annotation is not inspect.Signature.empty


def test_every_plugin_folder_has_the_same_shape() -> None:
    for folder in sorted((ROOT / "plugins").iterdir()):
        if not folder.is_dir():
            continue
        for part in ("pyproject.toml", "README.md"):
            assert (folder / part).exists(), f"{folder.name} has no {part}"
        assert (folder / "src" / f"pyagent_{folder.name.replace('-', '_')}").is_dir(), folder.name
        assert list((folder / "tests").glob("test_*.py")), f"{folder.name} has no tests"


def test_no_plugin_imports_another_plugin() -> None:
    modules = {f"pyagent_{p.name.replace('-', '_')}" for p in (ROOT / "plugins").iterdir() if p.is_dir()}
    for folder in (ROOT / "plugins").iterdir():
        own = f"pyagent_{folder.name.replace('-', '_')}"
        for src in (folder / "src").rglob("*.py") if (folder / "src").exists() else []:
            text = src.read_text()
            for other in modules - {own}:
                assert not re.search(rf"^\s*(from|import) {other}\b", text, re.M), f"{src} imports {other}"
