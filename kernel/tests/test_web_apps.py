"""Web apps plugins register (``pyagent_register_web_apps``) while an orchestrator serves.

The HTTP server here is a throwaway trigger kind registered with ``http=True`` that hands
requests to ``host.web_apps`` as an ASGI server would (no socket: the kernel has no server
of its own; pyagent-webhooks' real one is tested in its suite and in the dashboard's).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from pyagent import ConfigurationError, hookimpl
from pyagent.orchestrator import Orchestrator, Task, Workflow
from pyagent.serving.web import check_path

pytestmark = pytest.mark.anyio


class App:
    """An ASGI app with a lifespan: it greets with what its startup put in the lifespan state."""

    def __init__(self, name: str, *, fail_startup: bool = False) -> None:
        self.name = name
        self.events: list[str] = []
        self.fail_startup = fail_startup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    scope["state"]["greeting"] = f"hello from {self.name}"
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.events.append(f"request {scope['path']}")
        body = f"{scope['state']['greeting']}: {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def get(app: Any, path: str) -> str:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    return bytes(sent[-1]["body"]).decode()


class Server:
    """A shared trigger server that says it serves HTTP: records what it was given to mount."""

    def __init__(self) -> None:
        self.started: list[list[Any]] = []
        self.stopped = False

    async def serve(self, host: Any, *, task_status: Any) -> None:
        self.started.append(list(host.web_apps))
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            self.stopped = True


def plugin(server: Server, apps: dict[str, Any], made: list[tuple[Any, Any]]) -> Any:
    class Plugin:
        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("web", lambda orch, wf, **o: object(), serve=server.serve, http=True)

        @hookimpl
        def pyagent_register_web_apps(self, register: Any) -> None:
            for path, app in apps.items():
                def factory(orchestrator: Any, host: Any, _app: Any = app) -> Any:
                    made.append((orchestrator, host))
                    if isinstance(_app, Exception):
                        raise _app
                    return _app
                register(path, factory)

    return Plugin()


async def test_web_apps_are_built_started_mounted_and_stopped_with_the_server(mini_runtime: Any) -> None:
    server, made = Server(), []
    ui, admin = App("ui"), App("admin")
    mini_runtime.register(plugin(server, {"/ui": ui, "/admin/flows": admin}, made), "web")
    orch = Orchestrator()
    async with orch.serving(port=0, web_token="s3cret") as host:
        # No trigger of the "web" kind: its server was opened for the web apps.
        assert [[w.path for w in mounted] for mounted in server.started] == [["/admin/flows", "/ui"]]
        assert made == [(orch, host), (orch, host)] and host.web_token == "s3cret"
        assert ui.events == ["startup"] and admin.events == ["startup"]
        by_path = {w.path: w for w in host.web_apps}
        assert await get(by_path["/ui"], "/runs") == "hello from ui: /runs"  # the lifespan's state reaches requests
        assert by_path["/ui"].plugin == "web"
    assert ui.events == ["startup", "request /runs", "shutdown"] and admin.events == ["startup", "shutdown"]
    assert server.stopped and host.web_apps == []


async def test_no_http_port_builds_no_web_app(mini_runtime: Any) -> None:
    server, made = Server(), []
    mini_runtime.register(plugin(server, {"/ui": App("ui")}, made), "web")
    async with Orchestrator().serving(port=None) as host:
        assert host.web_apps == []
    assert made == [] and server.started == []


async def test_a_web_app_that_fails_is_left_out_and_the_others_are_served(
        mini_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    server, made = Server(), []
    good = App("good")
    apps = {"/good": good, "/broken": RuntimeError("cannot build"), "/nothing": None,
            "/late": App("late", fail_startup=True), "bad path/": App("bad")}
    mini_runtime.register(plugin(server, apps, made), "web")
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: f"{x}!")])
    caplog.set_level(logging.INFO, "pyagent.serve")
    async with Orchestrator().serving(port=0) as host:
        assert [w.path for w in host.web_apps] == ["/good"]
        sub = await host.submit(wf, "x", trigger="test", source="t")  # the triggers are served all the same
        with anyio.fail_after(10):
            while (await host.run_status(sub.run_id) or {}).get("status") != "completed":
                await anyio.sleep(0.005)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("/broken" in e and "RuntimeError: cannot build" in e for e in errors)
    assert any("/late" in e and "its startup failed: no database" in e for e in errors)
    assert any("bad path/" in e and "give a URL path" in e for e in errors)
    assert good.events == ["startup", "shutdown"]


async def test_without_a_plugin_serving_http_the_web_apps_are_reported_not_served(
        mini_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    made: list[tuple[Any, Any]] = []
    app = App("ui")

    class Plugin:
        @hookimpl
        def pyagent_register_web_apps(self, register: Any) -> None:
            register("/ui", lambda orch, host: made.append((orch, host)) or app)

    mini_runtime.register(Plugin(), "web-only")
    caplog.set_level(logging.WARNING, "pyagent.serve")
    async with Orchestrator().serving(port=0):
        pass
    assert any("/ui are not served: no installed plugin serves HTTP (install pyagent-webhooks)" in r.getMessage()
               for r in caplog.records)
    assert made == [] and app.events == []  # not even built


async def test_an_app_without_a_lifespan_is_served_as_it_is(mini_runtime: Any) -> None:
    server, made = Server(), []

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http")  # as a bare ASGI function does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    mini_runtime.register(plugin(server, {"/plain": plain}, made), "web")
    async with Orchestrator().serving(port=0) as host:
        assert [w.path for w in host.web_apps] == ["/plain"]
        assert await get(host.web_apps[0], "/") == "plain"


def test_web_app_paths_are_checked() -> None:
    for good in ("/ui", "/admin/flows", "/a-b_c.d"):
        assert check_path(good) == good
    for bad in ("", "/", "ui", "/ui/", "/ui?x=1", "/u i", 7):
        with pytest.raises(ConfigurationError, match="give a URL path"):
            check_path(bad)


async def test_a_server_that_cannot_open_for_the_web_apps_alone_does_not_stop_serving(
        mini_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = App("ui")

    async def taken(host: Any, *, task_status: Any) -> None:
        raise ConfigurationError("cannot listen on 127.0.0.1:8000: address in use")

    class Plugin:
        @hookimpl
        def pyagent_register_triggers(self, register: Any) -> None:
            register("web", lambda orch, wf, **o: object(), serve=taken, http=True)

        @hookimpl
        def pyagent_register_web_apps(self, register: Any) -> None:
            register("/ui", lambda orch, host: app)

    mini_runtime.register(Plugin(), "web")
    wf = Workflow(name="w", steps=[Task(name="A", agent=lambda x: f"{x}!")])
    caplog.set_level(logging.INFO, "pyagent.serve")
    async with Orchestrator().serving(port=8000) as host:
        sub = await host.submit(wf, "x", trigger="test", source="t")
        with anyio.fail_after(10):
            while (await host.run_status(sub.run_id) or {}).get("status") != "completed":
                await anyio.sleep(0.005)
    assert any("web apps at /ui are not served: cannot listen on 127.0.0.1:8000" in r.getMessage()
               for r in caplog.records)
    assert app.events == ["startup", "shutdown"]
