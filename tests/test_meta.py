"""Meta-tests: every hook is documented, tested, and described in its spec."""

from __future__ import annotations

import ast
import importlib.util
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
        "executors", "patterns", "routers", "stores", "monitors", "triggers", "web_apps", "models", "commands"}


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


# -- the plugin API ------------------------------------------------------------------------------

# What a plugin may import from the kernel: the plugin API and the user API. The rest is private.
PLUGIN_MAY_IMPORT = {"pyagent", "pyagent.plugin", "pyagent.orchestrator", "pyagent.testing", "pyagent.monitors"}
PLUGIN_SOURCES = sorted(p for p in ROOT.glob("plugins/*/src/**/*.py") if ".nox" not in p.parts)


def kernel_imports(path: Path) -> list[tuple[int, str]]:
    """Every kernel module ``path`` imports, anywhere in it (inside functions and TYPE_CHECKING too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "pyagent":  # `from pyagent import engine` imports a module too
                names += [f"pyagent.{a.name}" for a in node.names
                          if f"pyagent.{a.name}" not in PLUGIN_MAY_IMPORT and _is_module(f"pyagent.{a.name}")]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "pyagent" or n.startswith("pyagent.")]
    return found


def _is_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_the_import_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from pyagent.plugin import hookimpl\n"
        "import pyagent.engine.run\n"
        "from pyagent import engine, agent\n"
        "if TYPE_CHECKING:\n    from pyagent.model.tasks import Task\n"
        "def f():\n    from pyagent.durability.store import Store\n"
        "from .sibling import x\n"
    )
    assert kernel_imports(source) == [
        (2, "pyagent.plugin"), (3, "pyagent.engine.run"), (4, "pyagent"), (4, "pyagent.engine"),
        (6, "pyagent.model.tasks"), (8, "pyagent.durability.store"),
    ]


@pytest.mark.parametrize("source", PLUGIN_SOURCES, ids=[str(p.relative_to(ROOT / "plugins")) for p in PLUGIN_SOURCES])
def test_plugins_import_the_kernel_only_through_the_plugin_api(source: Path) -> None:
    private = [f"line {line}: {module}" for line, module in kernel_imports(source) if module not in PLUGIN_MAY_IMPORT]
    assert not private, (
        f"{source.relative_to(ROOT)} imports private kernel modules ({'; '.join(private)}): import the "
        "names from pyagent.plugin (add them there if they are missing)"
    )


def test_every_name_in_the_plugin_api_resolves() -> None:
    import pyagent.plugin

    assert len(set(pyagent.plugin.__all__)) == len(pyagent.plugin.__all__)
    missing = [name for name in pyagent.plugin.__all__ if getattr(pyagent.plugin, name, None) is None]
    assert not missing, f"pyagent.plugin.__all__ names what it does not have: {missing}"
    unlisted = set(pyagent.plugin._LAZY) - set(pyagent.plugin.__all__)
    assert not unlisted, f"pyagent.plugin loads names that __all__ does not list: {sorted(unlisted)}"
