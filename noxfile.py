"""The pyagent test matrix: the kernel alone, each plugin alone with the kernel, everything together."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["kernel", "plugin", "all", "lint", "typecheck"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PYTHON = ["3.11"]
PLUGINS = sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml"))
TESTED_PLUGINS = [p for p in PLUGINS if (ROOT / "plugins" / p / "tests").is_dir()]
PASS_ENV = ["PYAGENT_TEST_POSTGRES_URL"]


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASS_ENV if k in os.environ}


@nox.session(python=PYTHON)
def kernel(session: nox.Session) -> None:
    """Kernel tests with no plugin installed."""
    session.install("./kernel[test]")
    session.run("pytest", "kernel/tests", *session.posargs, env=_env())


@nox.session(python=PYTHON)
@nox.parametrize("name", TESTED_PLUGINS)
def plugin(session: nox.Session, name: str) -> None:
    """One plugin's tests with only the kernel and that plugin (and its declared deps) installed."""
    if name == "suite":  # the meta-distribution depends on every plugin: give them all locally
        _install_everything(session)
    else:
        session.install("./kernel[test]", f"./plugins/{name}[test]")
    for package, binaries in DEBIAN_PACKAGES.get(name, {}).items():
        _install_debian(session, package, binaries)
    session.run("pytest", f"plugins/{name}/tests", *session.posargs, env=_env())


# Debian packages a plugin's tests need, with the programs they provide: the real Prometheus
# server and promtool for pyagent-prometheus's end-to-end and exposition tests.
DEBIAN_PACKAGES: dict[str, dict[str, list[str]]] = {"prometheus": {"prometheus": ["prometheus", "promtool"]}}


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


@nox.session(name="all", python=PYTHON)
def all_(session: nox.Session) -> None:
    """Everything installed: integration tests, meta-tests, and every suite again together."""
    _install_everything(session)
    for name in PLUGINS:
        for package, binaries in DEBIAN_PACKAGES.get(name, {}).items():
            _install_debian(session, package, binaries)
    session.run("pytest", "tests", "kernel/tests", *(f"plugins/{p}/tests" for p in TESTED_PLUGINS),
                *session.posargs, env=_env())


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the kernel."""
    session.install("mypy", "./kernel[test,encryption]")
    session.run("mypy", "kernel/src/pyagent")


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
