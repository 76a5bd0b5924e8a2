"""The dashboard as serving mounts it at /ui (``pyagent_register_web_apps``), in process.

The real ``pyagent serve`` process, driven in a browser, is test_serve.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from pyagent_dashboard.plugin import PATH, serving_app

from pyagent.orchestrator import Orchestrator, Task, Workflow

from .conftest import TOKEN

pytestmark = pytest.mark.anyio
HTML = {"accept": "text/html"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the serving HTTP server is uvicorn's


def test_the_plugin_registers_the_dashboard_at_ui(runtime: Any) -> None:
    regs = runtime.registry("web_apps")
    assert PATH == "/ui" and regs["/ui"].obj is serving_app and regs["/ui"].plugin == "dashboard"


async def test_serving_mounts_the_dashboard_at_ui_behind_the_token(runtime: Any, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyagent_webhooks", reason="the serving HTTP server is pyagent-webhooks'")
    pytest.importorskip("pyagent_sql", reason="runs are recorded in SQLite (pyagent-sql)")
    monkeypatch.delenv("PYAGENT_DASHBOARD_TOKEN", raising=False)
    orch = Orchestrator()
    wf = orch.add_workflow(Workflow(name="w", steps=[Task(name="A", agent=lambda x: f"{x}!")]))
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    async with orch.serving(port=0, store=store, web_token=TOKEN) as host:
        (mounted,) = host.web_apps
        assert mounted.path == "/ui" and mounted.plugin == "dashboard"
        dashboard = mounted.app.state.dashboard
        assert dashboard.host is host and dashboard.orchestrator is orch and not dashboard.read_only
        assert dashboard.source.url == store and dashboard.token == TOKEN and dashboard.serving_here()
        sub = await host.submit(wf, "x", trigger="webhook", source="/in")
        async with httpx.AsyncClient(base_url=host.urls[0], timeout=10) as client:
            assert (await client.get("/ui/runs")).status_code == 401
            bearer = {"authorization": f"Bearer {TOKEN}", **HTML}
            with anyio.fail_after(10):
                while f'data-run="{sub.run_id}" data-status="completed"' not in (
                        page := (await client.get("/ui/runs", headers=bearer)).text):
                    await anyio.sleep(0.05)
            assert ">read-only<" not in page and 'data-trigger="webhook" title="/in"' in page
    assert host.web_apps == [] and dashboard.closing  # its lifespan ended with the serving


async def test_no_store_or_a_public_address_without_a_token_serves_no_dashboard(
        runtime: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYAGENT_DASHBOARD_TOKEN", raising=False)
    orch = Orchestrator()
    caplog.set_level(logging.INFO, "pyagent.dashboard")
    host = SimpleNamespace(store=None, http_host="127.0.0.1", web_token=None, orchestrator=orch)
    assert serving_app(orch, host) is None
    assert "serving has no store" in caplog.text
    host = SimpleNamespace(store="memory://public", http_host="0.0.0.0", web_token=None, orchestrator=orch)
    assert serving_app(orch, host) is None
    assert "--host 0.0.0.0 would show every run to the network without a token" in caplog.text
    monkeypatch.setenv("PYAGENT_DASHBOARD_TOKEN", "from-the-environment")
    app = serving_app(orch, host)
    assert app is not None and app.state.dashboard.token == "from-the-environment"
    host.web_token = "from-serve"  # pyagent serve --token wins over the environment
    assert serving_app(orch, host).state.dashboard.token == "from-serve"
