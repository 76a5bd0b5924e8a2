from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyagent.testing_fixtures import *  # noqa: F403

# This folder on the path, for the helper modules next to the tests (serving.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import LISTENING, Served

# Plugin distributions that tests install into fresh venvs; their own tests need them installed.
collect_ignore = ["fixtures"]

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv")


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment a user's shell would have: nothing of this test run's venv or settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("PYAGENT_")}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def user_env() -> dict[str, str]:
    """The environment for a subprocess that stands for a user's shell (see ``clean_env``)."""
    return clean_env()


@dataclass
class Venv:
    """A real virtual environment, made with uv when it is there and with venv and pip otherwise."""

    path: Path

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def install(self, *requirements: str) -> None:
        if UV:
            cmd = [UV, "pip", "install", "-q", "--python", self.bin("python"), *requirements]
        else:
            cmd = [self.bin("python"), "-m", "pip", "install", "-q", *requirements]
        subprocess.run(cmd, check=True, env=clean_env(), timeout=600)

    def run(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=clean_env(self.path), capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def kernel_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout's kernel, built once per session (so it is never a stale cached build)."""
    out = tmp_path_factory.mktemp("kernel-wheel")
    if UV:
        cmd = [UV, "build", "-q", "--wheel", "--out-dir", str(out), str(ROOT / "kernel")]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT / "kernel")]
    subprocess.run(cmd, check=True, env=clean_env(), timeout=600)
    (wheel,) = out.glob("pyagent_kernel-*.whl")
    return wheel


@pytest.fixture
def fresh_venv(tmp_path: Path, kernel_wheel: Path) -> Callable[[str], Venv]:
    """``fresh_venv(name)``: a new virtual environment holding only the kernel with its test extra."""

    def make(name: str = "venv") -> Venv:
        path = tmp_path / name
        if UV:
            subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(path)], check=True,
                           env=clean_env(), timeout=120)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        venv = Venv(path)
        venv.install(f"{kernel_wheel}[test]")
        return venv

    return make


@pytest.fixture
def own_schema() -> Iterator[Callable[[str], str]]:
    """``own_schema(url)``: a PostgreSQL URL into a schema of its own (dropped afterwards), so a
    test never shares the server's default schema with other test runs; other URLs unchanged."""
    import asyncio
    import uuid

    made: list[tuple[str, str]] = []

    def scoped(url: str) -> str:
        if not url.startswith("postgres"):
            return url
        schema = f"pyagent_test_{uuid.uuid4().hex[:12]}"
        made.append((url, schema))
        return url + ("&" if "?" in url else "?") + f"schema={schema}"

    yield scoped

    async def drop(url: str, schema: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(url.split("?", 1)[0].replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    for url, schema in made:
        asyncio.run(drop(url, schema))


@pytest.fixture
def serve_process() -> Iterator[Callable[..., Served]]:
    """``serve_process(*args, cwd=..., env=..., ready_line=LISTENING, wait=60)``: a real
    ``pyagent serve <args>`` process (``serving.Served``), ready when it returns (``wait=None``:
    not waited for). What is still running at the end is stopped: SIGTERM to all, SIGKILL to
    any still up 30 s later."""
    started: list[Served] = []

    def start(
        *args: str,
        cwd: Path,
        env: dict[str, str],
        ready_line: re.Pattern[str] = LISTENING,
        wait: float | None = 60,
    ) -> Served:
        served = Served(*args, cwd=cwd, env=env, ready_line=ready_line)
        started.append(served)
        if wait is not None:
            served.wait_ready(wait)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.terminate()
    for served in started:
        try:
            served.proc.wait(30)
        except subprocess.TimeoutExpired:
            served.proc.kill()
            served.proc.wait(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, own_schema: Callable[[str], str]) -> str:
    """A store several processes share: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    base = os.environ.get("PYAGENT_TEST_POSTGRES_URL")
    if not base:
        pytest.skip(
            "PYAGENT_TEST_POSTGRES_URL is not set: no PostgreSQL server to run against "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test; CI sets it)"
        )
    return own_schema(base)
