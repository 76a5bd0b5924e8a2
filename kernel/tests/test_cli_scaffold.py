"""``pyagent plugin new``: what it writes, and what it refuses to write.

That the written plugins install and pass their own tests is checked for every kind in
``tests/test_plugin_scaffold.py`` (a fresh venv per plugin).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyagent.cli import main
from pyagent.cli.scaffold import KINDS

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"pyagent", "pyagent.plugin", "pyagent.orchestrator", "pyagent.testing", "pyagent.monitors",
          "pyagent.testing_fixtures"}


def new(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["plugin", "new", *args, "--dir", str(tmp_path)])


def kernel_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {m for m in modules if m == "pyagent" or m.startswith("pyagent.")}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_writes_a_complete_distribution(tmp_path: Path, kind: str) -> None:
    out = new(tmp_path, "acme-thing", "--kind", kind)
    assert out.exit_code == 0, out.output
    folder = tmp_path / "pyagent-acme-thing"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/pyagent_acme_thing/__init__.py",
                     "tests/conftest.py", "tests/test_acme_thing.py"]
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "${" not in text, f"{path.name} has an unfilled placeholder"
    # The module and the tests compile, and use only the public kernel modules.
    for rel in ("src/pyagent_acme_thing/__init__.py", "tests/conftest.py", "tests/test_acme_thing.py"):
        compile((folder / rel).read_text(), rel, "exec")
        assert kernel_imports(folder / rel) <= PUBLIC, rel
    assert kernel_imports(folder / "src/pyagent_acme_thing/__init__.py") <= {"pyagent.plugin", "pyagent.orchestrator"}
    assert "pyagent-acme-thing" in (folder / "README.md").read_text()
    assert f"Created pyagent-acme-thing ({kind} 'acme-thing'" in out.output


@pytest.mark.parametrize(("kind", "group", "value"), [
    ("pattern", "pyagent", "pyagent_acme_thing"),
    ("router", "pyagent", "pyagent_acme_thing"),
    ("monitor", "pyagent", "pyagent_acme_thing"),
    ("trigger", "pyagent", "pyagent_acme_thing"),
    ("store", "pyagent.stores", "pyagent_acme_thing:AcmeThingStore"),
    ("executor", "pyagent.executors", "pyagent_acme_thing:AcmeThingExecutor"),
])
def test_the_pyproject_declares_the_entry_point_the_kernel_looks_in(
    tmp_path: Path, kind: str, group: str, value: str
) -> None:
    assert new(tmp_path, "acme_thing", "--kind", kind).exit_code == 0
    project = tomllib.loads((tmp_path / "pyagent-acme-thing" / "pyproject.toml").read_text())
    assert project["project"]["name"] == "pyagent-acme-thing"
    assert project["project"]["entry-points"] == {group: {"acme-thing": value}}
    assert project["project"]["dependencies"] == ["pyagent-kernel>=0.1.0"]
    # The kernel's test extra brings trio, which the kernel's fixtures run every test on.
    assert project["project"]["optional-dependencies"]["test"] == ["pyagent-kernel[test]>=0.1.0"]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/pyagent_acme_thing"]
    assert "uv" not in project.get("tool", {})  # outside the pyagent repository the kernel comes from an index


def test_the_store_template_implements_every_method_of_the_store_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The protocol grows (create_run, leases, fence=): the template must grow with it, with the
    same signatures, or the stores started from it break against the kernel."""
    import importlib
    import inspect
    import sys

    from pyagent.plugin import Store

    assert new(tmp_path, "proto-check", "--kind", "store").exit_code == 0
    monkeypatch.syspath_prepend(str(tmp_path / "pyagent-proto-check" / "src"))
    monkeypatch.delitem(sys.modules, "pyagent_proto_check", raising=False)
    cls = importlib.import_module("pyagent_proto_check").ProtoCheckStore
    assert isinstance(cls("proto-check://x"), Store)
    methods = [name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")]
    assert {"create_run", "begin_run", "claim_run", "list_leases"} <= set(methods)
    for name in methods:
        assert inspect.iscoroutinefunction(getattr(cls, name)), name
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Store, name)), name
    sys.modules.pop("pyagent_proto_check", None)


def test_the_default_kind_is_pattern_and_a_pyagent_prefix_is_not_doubled(tmp_path: Path) -> None:
    assert new(tmp_path, "pyagent-race").exit_code == 0
    text = (tmp_path / "pyagent-race" / "src" / "pyagent_race" / "__init__.py").read_text()
    assert 'register("race", RacePattern())' in text


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (nox -s typecheck runs this test)")
def test_the_written_code_passes_ruff(tmp_path: Path) -> None:
    for kind in KINDS:
        assert new(tmp_path, f"lint-{kind}", "--kind", kind).exit_code == 0
    out = subprocess.run(["ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is not installed (nox -s typecheck runs this test)")
def test_the_written_code_passes_mypy_strict(tmp_path: Path) -> None:
    for kind in KINDS:
        assert new(tmp_path, f"typed-{kind}", "--kind", kind).exit_code == 0
        folder = tmp_path / f"pyagent-typed-{kind}"
        env = {**os.environ, "MYPYPATH": os.pathsep.join([str(ROOT / "kernel" / "src"), str(folder / "src")])}
        out = subprocess.run(["mypy", "--strict", "--python-version", "3.11", "--cache-dir", str(tmp_path / ".mypy"),
                              str(folder / "src"), str(folder / "tests")], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout + out.stderr


# -- refusals: a clear one-line error, exit code 2, nothing written -----------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("Race", "'Race' cannot name a distribution and a Python module: use lowercase letters, digits "
             "and single '-' or '_' between words, starting with a letter (did you mean 'race'?)"),
    ("my.race", "(did you mean 'my-race'?)"),
    ("my race", "(did you mean 'my-race'?)"),
    ("9lives", "(did you mean 'lives'?)"),
    ("a--b", "(did you mean 'a-b'?)"),
    ("pyagent-", "'pyagent-' names no plugin: give a name such as 'race'"),
    ("kernel", "pyagent-kernel is part of pyagent itself, not a plugin"),
    ("router", "pyagent-router is another project's distribution on PyPI: choose another name (e.g. 'acme-router')"),
    ("sequential", "pyagent-sequential is the name of one of pyagent's own plugins: choose a name of your own"),
    ("keyword_router", "pyagent-keyword-router is the name of one of pyagent's own plugins"),
    ("a" * 300, "is 300 characters long: give a name of at most 64"),
])
def test_bad_names_are_refused_with_the_fix(tmp_path: Path, name: str, message: str) -> None:
    out = new(tmp_path, name)
    assert out.exit_code == 2
    assert message in out.output
    assert out.output.count("Error:") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_kind_suggests_the_closest(tmp_path: Path) -> None:
    out = new(tmp_path, "race", "--kind", "patern")
    assert out.exit_code == 2
    assert ("unknown kind 'patern': did you mean 'pattern'? choose one of pattern, router, store, "
            "monitor, trigger, executor") in out.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pyagent-race").mkdir()
    (tmp_path / "pyagent-race" / "mine.txt").write_text("keep me")
    out = new(tmp_path, "race")
    assert out.exit_code == 2
    assert "pyagent-race already exists: choose another name, or another folder with --dir (nothing was written)" in out.output
    assert [p.name for p in (tmp_path / "pyagent-race").iterdir()] == ["mine.txt"]


def test_a_missing_dir_is_refused(tmp_path: Path) -> None:
    out = new(tmp_path / "nowhere", "race")
    assert out.exit_code == 2 and "does not exist" in out.output


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_text
    written: list[Path] = []

    def fail_on_third(self: Path, *args: object, **kwargs: object) -> int:
        written.append(self)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", fail_on_third)
    out = new(tmp_path, "race")
    assert out.exit_code == 1
    assert "could not write" in out.output and "No space left on device" in out.output
    assert "(nothing was written)" in out.output
    assert list(tmp_path.iterdir()) == []


# -- inside the pyagent repository ---------------------------------------------------------------


def fake_repository(root: Path, kernel_name: str = "pyagent-kernel") -> Path:
    (root / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["kernel", "plugins/*"]\n')
    (root / "kernel").mkdir()
    (root / "kernel" / "pyproject.toml").write_text(f'[project]\nname = "{kernel_name}"\n')
    (root / "plugins").mkdir()
    return root / "plugins"


def test_in_the_repositorys_plugins_folder_a_plugin_is_a_workspace_member(tmp_path: Path) -> None:
    plugins = fake_repository(tmp_path)
    # The repository may create its own plugins' names there (that is how they are started).
    out = new(plugins, "cron", "--kind", "trigger")
    assert out.exit_code == 0, out.output
    folder = plugins / "cron"  # plugins/<name>, as every plugin of the repository
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["name"] == "pyagent-cron"
    assert project["tool"]["uv"]["sources"] == {"pyagent-kernel": {"workspace": True}}
    assert (folder / "src" / "pyagent_cron" / "__init__.py").is_file()
    readme = (folder / "README.md").read_text()
    assert 'pip install -e "./kernel[test]" -e "./plugins/cron[test]"' in readme
    assert "pytest plugins/cron/tests" in readme


def test_another_projects_workspace_gets_an_ordinary_plugin(tmp_path: Path) -> None:
    plugins = fake_repository(tmp_path, kernel_name="something-else")
    assert new(plugins, "acme-cron", "--kind", "trigger").exit_code == 0
    project = tomllib.loads((plugins / "pyagent-acme-cron" / "pyproject.toml").read_text())
    assert "uv" not in project.get("tool", {})
    assert new(plugins, "cron", "--kind", "trigger").exit_code == 2


def test_the_next_steps_name_the_folder_relative_to_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["plugin", "new", "race"])
    assert out.exit_code == 0, out.output
    assert 'pip install -e "./pyagent-race[test]"' in out.output
    assert "pytest ./pyagent-race/tests" in out.output
