"""Fixtures: a SQLite store with real runs, dashboard servers on 127.0.0.1, and Debian's chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from pyagent.testing_fixtures import *  # noqa: F403

HERE = Path(__file__).parent
FLOWS = HERE / "flows.py"
SERVED = HERE / "served.py"
TOKEN = "correct horse battery staple"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Recorded:
    """A SQLite store holding real runs, the flows module that made them, and their run ids."""

    url: str
    flows: ModuleType
    ids: dict[str, str]


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    pytest.importorskip("pyagent_sql", reason="the dashboard's tests record runs in SQLite (pyagent-sql)")
    folder = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{folder / 'runs.db'}"
    os.environ["PYAGENT_DASHBOARD_TEST_STORE"] = url
    spec = importlib.util.spec_from_file_location("dashboard_test_flows", FLOWS)
    assert spec is not None and spec.loader is not None
    flows = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = flows
    spec.loader.exec_module(flows)
    ids = anyio.run(flows.record_runs)
    return Recorded(url, flows, ids)


class Server:
    """uvicorn serving an app on 127.0.0.1 (an ephemeral port) in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    timeout_graceful_shutdown=1, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="dashboard-server", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the dashboard server did not stop"


@pytest.fixture
def serve() -> Any:
    return Server


class CliServer:
    """``pyagent dashboard`` in a process of its own, as a person starts it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "dashboard", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        if not line or "http://" not in line[0]:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"pyagent dashboard did not start: {line} {err}")
        self.banner = line[0]
        self.url = line[0].split("http://", 1)[1].split("/", 1)[0]
        self.url = f"http://{self.url}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="session")
def cli_server(recorded: Recorded) -> Iterator[CliServer]:
    """The read-only dashboard with a token, against the recorded store, knowing the flows' definitions."""
    server = CliServer("--storage", recorded.url, "--port", "0", "--token", TOKEN, "--workflows", str(FLOWS),
                       "--poll-interval", "0.2")
    try:
        yield server
    finally:
        server.stop()


class ServeProcess:
    """``pyagent serve tests/served.py`` (or ``app``) in a process of its own, as a person starts it.

    Listens on 127.0.0.1 on a free port; the dashboard's URL is read from its log.
    """

    def __init__(self, folder: Path, *args: str, app: Path = SERVED, store: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.store = store or f"sqlite:///{folder / 'served.db'}"
        self.ledger_up = folder / "ledger-up"
        environ = {**os.environ, "PYAGENT_DASHBOARD_TEST_LEDGER_UP": str(self.ledger_up), **(env or {})}
        environ.pop("PYAGENT_DASHBOARD_TOKEN", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyagent.cli", "serve", str(app), "--port", "0", "--storage", self.store,
             "--grace", "5", *args], cwd=folder, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.log: list[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line)
                if "serving /ui" in line and " at http://" in line:
                    self.ui = line.rsplit(" at ", 1)[1].strip().rstrip("/")
                    self.base = self.ui[: -len("/ui")]
                    found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(60):
            self.stop()
            raise RuntimeError("pyagent serve did not serve the dashboard:\n" + "".join(self.log))

    def stop(self) -> int:
        """SIGTERM, as systemd or docker stop would; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        finally:
            self.reader.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``pyagent serve`` with a SQLite store, a cron schedule and webhooks, the dashboard behind a token."""
    for module, dist in (("pyagent_sql", "pyagent-sql"), ("pyagent_cron", "pyagent-cron"),
                         ("pyagent_webhooks", "pyagent-webhooks")):
        pytest.importorskip(module, reason=f"serving the dashboard with schedules and webhooks needs {dist}")
    process = ServeProcess(tmp_path_factory.mktemp("serve"), "--token", TOKEN)
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, "pyagent serve did not stop cleanly on SIGTERM:\n" + "".join(process.log)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright's sync API runs an event loop in this thread while it is open: closed with the
    module, so that the tests after it (anyio.run, async tests) have the thread to themselves."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: apt-get install chromium (the nox session installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright_driver: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh chromium profile per test (no cookies carried over)."""
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


def sign_in(page: Any, base: str, token: str = TOKEN, path: str = "/runs") -> None:
    page.goto(base + path)
    page.fill("input[name=token]", token)
    page.click(".login button[type=submit]")
    page.wait_for_url(f"{base}{path}*")
