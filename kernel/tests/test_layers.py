"""The kernel's layers: a lower layer never imports a higher one at run time.

Bottom to top: base (errors, config, clock, hookspecs, plugins) → model → engine → durability →
the api modules (workflow, runner, controller, patterns, handoffs, cli, the public modules) and
the kernel's default plugins. Type-only imports (under ``if TYPE_CHECKING:``) do not count:
they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyagent

PACKAGE = Path(pyagent.__file__).parent
BASE = {"errors", "config", "clock", "hookspecs", "plugins", "_sync", "_compat"}
LAYERS = {"model": 1, "engine": 2, "durability": 3}
NAMES = {0: "base", 1: "model", 2: "engine", 3: "durability", 4: "api"}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 4
    if parts[1] in BASE:
        return 0
    return LAYERS.get(parts[1], 4)


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("pyagent", *path.relative_to(PACKAGE).with_suffix("").parts))
        out[name.removesuffix(".__init__")] = path
    return out


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """``pyagent`` modules imported by ``path`` outside ``if TYPE_CHECKING:`` blocks (also inside functions)."""
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pyagent":
            if node.module == "pyagent":
                found += [(f"pyagent.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "pyagent"]
    return found


def test_the_layers_exist() -> None:
    names = modules()
    assert {"pyagent.model.tasks", "pyagent.engine.run", "pyagent.durability.checkpoint",
            "pyagent.workflow", "pyagent.plugin"} <= set(names)


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = []
    for name, path in modules().items():
        mine = layer(name)
        for imported, line in runtime_imports(path):
            if imported != "pyagent" and layer(imported) > mine:
                upward.append(f"{name} ({NAMES[mine]}) imports {imported} ({NAMES[layer(imported)]}) "
                              f"at line {line}")
    assert not upward, "\n".join(upward)


def test_the_engine_does_not_know_the_default_executor() -> None:
    # The engine's fast path asks the executor (``inline``), it does not import the default one.
    imported = {m for m, _ in runtime_imports(PACKAGE / "engine" / "run.py")}
    assert not any(m.startswith("pyagent._defaults") for m in imported)


def test_no_two_kernel_modules_import_each_other_in_a_circle() -> None:
    # A circle (even through imports inside functions) means neither module can be read,
    # tested or replaced without the other: the layers and the one-job modules would be a lie.
    names = modules()
    edges = {name: {m for m, _ in runtime_imports(path) if m in names and m != name}
             for name, path in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in names:
        if name not in index:
            visit(name)
    assert not circles, circles
