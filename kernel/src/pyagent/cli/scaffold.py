"""``pyagent plugin new``: write a complete plugin distribution that installs and passes its tests.

Names follow the convention of llm (``llm-foo``), datasette (``datasette-foo``) and pytest
(``pytest-foo``) plugins: distribution ``pyagent-NAME``, module ``pyagent_NAME``, so a user
finds plugins by the prefix. Names that pyagent's own plugins use, or that other projects hold
on PyPI, are refused, so a new plugin never shadows one of them.

The templates are package data: ``templates/_common/`` for every kind, ``templates/_workflows/``
for kinds whose tests run workflows (a throwaway pattern: the kernel ships none), then
``templates/<kind>/``; each file is filled with :class:`string.Template`, and a path part in
braces (``{module}``, ``{snake}``) is replaced too.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import shutil
import string
import tempfile
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib.metadata import PackageNotFoundError, version
from importlib.resources.abc import Traversable
from pathlib import Path

import click

KINDS = ("pattern", "router", "store", "monitor", "trigger", "executor")

# Most kinds are plugin modules in the ``pyagent`` group, found through their
# ``pyagent_register_*`` hooks; stores and executors are drivers picked by name.
DRIVER_GROUPS = {"store": "pyagent.stores", "executor": "pyagent.executors"}
CLASS_SUFFIX = {"pattern": "Pattern", "router": "Router", "store": "Store", "monitor": "Monitor",
                "trigger": "Trigger", "executor": "Executor"}

# pyagent's own distributions, shipped or planned: only the pyagent repository itself may
# create them (in its plugins/ folder).
PROJECT_NAMES = frozenset({
    "sequential", "parallel", "graph", "supervisor", "consensus", "debate", "reasoning",
    "handoffs", "keyword-router", "embedding-router", "llm-router", "sql", "cron", "webhooks",
    "console", "slack", "prometheus", "otel", "dask", "openai", "dashboard", "mcp", "a2a",
})
NOT_PLUGINS = frozenset({"kernel", "suite", "workspace"})
# Distributions named pyagent-* that other projects hold on PyPI.
TAKEN_ON_PYPI = frozenset({"all", "patterns", "router", "providers", "context", "harness",
                           "studio", "blueprint", "compress"})

DEVELOP = """\
## Install and test

Install pyagent-kernel first, with its `test` extra (pytest, and trio: the kernel's fixtures
run every test on asyncio and on trio); from a clone of pyagent that is
`pip install "path/to/pyagent/kernel[test]"`. Then, in this folder:

```bash
pip install -e ".[test]"
pytest
pyagent plugins          # lists this plugin
```
"""
DEVELOP_IN_REPOSITORY = """\
## Install and test

From the root of the pyagent repository (`nox` runs these tests with only the kernel and this
plugin installed):

```bash
pip install -e "./kernel[test]" -e "./{folder}[test]"
pytest {folder}/tests
```
"""

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
# Folder and file names (pyagent-NAME, test_NAME.py, ...) must fit a file system's 255 bytes.
MAX_NAME = 64


class _KindChoice(click.Choice):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """A choice of plugin kind that suggests the closest kind for a misspelling."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        text = str(value).strip().lower()
        if text in KINDS:
            return text
        close = difflib.get_close_matches(text, KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        self.fail(f"unknown kind {value!r}: {hint}choose one of {', '.join(KINDS)}", param, ctx)


@dataclass(frozen=True)
class PluginPlan:
    """Everything that names the new plugin, decided (and checked) before anything is written."""

    name: str  # canonical: lowercase, words joined by "-"; the registered and entry-point name
    kind: str
    target: Path
    workspace: Path | None  # the pyagent repository, when the plugin becomes one of its members

    @property
    def dist(self) -> str:
        return f"pyagent-{self.name}"

    @property
    def snake(self) -> str:
        return self.name.replace("-", "_")

    @property
    def module(self) -> str:
        return f"pyagent_{self.snake}"

    @property
    def cls(self) -> str:
        suffix = CLASS_SUFFIX[self.kind]
        camel = "".join(part.capitalize() for part in self.name.split("-"))
        return camel if camel.endswith(suffix) else camel + suffix


def check_name(raw: str) -> str:
    """The canonical plugin name for ``raw``, or a BadParameter saying what is wrong and what would do."""
    name = raw.strip()
    for prefix in ("pyagent-", "pyagent_"):  # "pyagent-race" means the plugin "race"
        if name.lower().startswith(prefix):
            name = name[len(prefix):]
    if not name:
        raise click.BadParameter(f"{raw!r} names no plugin: give a name such as 'race'", param_hint="NAME")
    if len(name) > MAX_NAME:
        raise click.BadParameter(f"{name[:20]!r}... is {len(name)} characters long: give a name of at most "
                                 f"{MAX_NAME}", param_hint="NAME")
    if not _NAME.fullmatch(name):
        fixed = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        fixed = re.sub(r"^[0-9-]+", "", fixed)
        hint = f" (did you mean {fixed!r}?)" if fixed and _NAME.fullmatch(fixed) else ""
        raise click.BadParameter(
            f"{raw!r} cannot name a distribution and a Python module: use lowercase letters, digits "
            f"and single '-' or '_' between words, starting with a letter{hint}",
            param_hint="NAME",
        )
    return re.sub(r"[-_]", "-", name)


def plan(raw_name: str, kind: str, parent: Path) -> PluginPlan:
    """Decide the plugin's names and folder; refuse anything that would make a bad or clashing plugin."""
    name = check_name(raw_name)
    parent = parent.resolve()
    workspace = _pyagent_workspace(parent / name)
    target = parent / (name if workspace is not None else f"pyagent-{name}")
    if name in NOT_PLUGINS:
        raise click.BadParameter(f"pyagent-{name} is part of pyagent itself, not a plugin: choose another name",
                                 param_hint="NAME")
    if name in TAKEN_ON_PYPI:
        raise click.BadParameter(
            f"pyagent-{name} is another project's distribution on PyPI: choose another name "
            f"(e.g. 'acme-{name}')", param_hint="NAME")
    if name in PROJECT_NAMES and workspace is None:
        raise click.BadParameter(
            f"pyagent-{name} is the name of one of pyagent's own plugins: choose a name of your own "
            f"(e.g. 'acme-{name}') so the two can be installed side by side", param_hint="NAME")
    if target.exists():
        raise click.UsageError(
            f"{target} already exists: choose another name, or another folder with --dir "
            "(nothing was written)")
    return PluginPlan(name=name, kind=kind, target=target, workspace=workspace)


def _pyagent_workspace(folder: Path) -> Path | None:
    """The pyagent repository when ``folder`` would be a member of its uv workspace (its plugins/)."""
    for root in folder.parents:
        pyproject = root / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            members = tomllib.loads(pyproject.read_text())["tool"]["uv"]["workspace"]["members"]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
            continue  # not a workspace root (a member's own pyproject, say): look further up
        relative = folder.relative_to(root).as_posix()
        if any(fnmatch(relative, str(m)) for m in members) and _is_kernel(root / "kernel"):
            return root
        return None
    return None


def _is_kernel(folder: Path) -> bool:
    try:
        return bool(tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"] == "pyagent-kernel")
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return False


def _kernel_version() -> str:
    try:
        return version("pyagent-kernel")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.1.0"


def substitutions(p: PluginPlan) -> dict[str, str]:
    kernel = f"pyagent-kernel>={_kernel_version()}"
    if p.kind in DRIVER_GROUPS:
        entry_points = (f'[project.entry-points."{DRIVER_GROUPS[p.kind]}"]\n'
                        f'{p.name} = "{p.module}:{p.cls}"')
    else:
        entry_points = f'[project.entry-points.pyagent]\n{p.name} = "{p.module}"'
    workspace = ""
    if p.workspace is not None:
        workspace = ("\n# Inside the uv workspace the kernel comes from the checkout, not from an index.\n"
                     "[tool.uv.sources]\npyagent-kernel = { workspace = true }\n")
        folder = p.target.relative_to(p.workspace).as_posix()
        develop = DEVELOP_IN_REPOSITORY.format(folder=folder)
    else:
        develop = DEVELOP
    return {
        "name": p.name, "dist": p.dist, "module": p.module, "snake": p.snake, "cls": p.cls,
        "kind": p.kind, "description": f"A pyagent {p.kind} plugin: {p.name}",
        "kernel_requirement": kernel, "test_requirement": kernel.replace("pyagent-kernel", "pyagent-kernel[test]", 1),
        "entry_points": entry_points, "workspace": workspace, "develop": develop.rstrip("\n"),
    }


def render(p: PluginPlan) -> dict[str, str]:
    """The files of the new plugin (relative path → text): the kind's templates over the common ones."""
    values = substitutions(p)
    templates = importlib.resources.files("pyagent.cli") / "templates"
    files: dict[str, str] = {}
    # Kinds whose tests run workflows also get a throwaway pattern (the kernel ships none).
    layers = ("_common", p.kind) if p.kind in ("pattern", "router") else ("_common", "_workflows", p.kind)
    for folder in layers:
        for rel, source in _walk(templates / folder, ""):
            path = rel.removesuffix(".tmpl").format(module=p.module, snake=p.snake)
            files[path] = string.Template(source.read_text(encoding="utf-8")).substitute(values)
    return files


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for entry in folder.iterdir():
        if entry.name == "__pycache__":
            continue
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_walk(entry, rel + "/"))
        elif entry.name.endswith(".tmpl"):
            found.append((rel, entry))
    return found


def write(p: PluginPlan) -> list[str]:
    """Write the plugin all at once: into a temporary folder beside the target, then renamed."""
    files = render(p)
    staging = Path(tempfile.mkdtemp(prefix=f".{p.target.name}-", dir=p.target.parent))
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.rename(p.target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(files)


@click.group()
def plugin() -> None:
    """Write new plugins."""


@plugin.command()
@click.argument("name")
@click.option("--kind", type=_KindChoice(KINDS), default="pattern", show_default=True,
              help="What the plugin adds.")
@click.option("--dir", "parent", default=".", show_default=True,
              type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
              help="Folder to create the plugin's folder in.")
def new(name: str, kind: str, parent: Path) -> None:
    """Write a plugin distribution named pyagent-NAME: pyproject, README, a working module, tests.

    The folder is pyagent-NAME, or NAME inside the pyagent repository's plugins/ folder.
    """
    p = plan(name, kind, parent)
    try:
        files = write(p)
    except OSError as exc:
        raise click.ClickException(f"could not write {p.target}: {exc} (nothing was written)") from exc
    try:
        shown = f"./{p.target.relative_to(Path.cwd()).as_posix()}"  # "./": pip takes it for a path
    except ValueError:
        shown = str(p.target)
    click.echo(f"Created {p.dist} ({p.kind} {p.name!r}, module {p.module}) in {shown}/:")
    for rel in files:
        click.echo(f"  {rel}")
    click.echo("\nNext, with pyagent-kernel installed in this environment:")
    click.echo(f'  pip install -e "{shown}[test]"')
    click.echo(f"  pytest {shown}/tests")


COMMANDS = [plugin]
