"""Web apps that plugins contribute to the serving HTTP server (``pyagent_register_web_apps``).

While an orchestrator serves with an HTTP port, each registered factory is called once with
the orchestrator and its host; the ASGI app it returns gets its lifespan run (startup before
anything is served, shutdown after the runs in flight have drained) and is mounted under its
path by the plugin that serves HTTP (a trigger kind registered with ``http=True``: webhooks).
A web app that cannot be built or started is logged and left out: it never stops the
triggers from being served.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from pyagent.errors import ConfigurationError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from pyagent.serving.host import TriggerHost

log = logging.getLogger("pyagent.serve")

_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$")
#: Seconds a web app's lifespan may take to start, and to shut down.
LIFESPAN_TIMEOUT = 30.0


def check_path(path: Any) -> str:
    """``path`` if it can be mounted (``/ui``, ``/admin/flows``), else a ConfigurationError."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise ConfigurationError(
            f"web app path {path!r}: give a URL path such as '/ui' (starting with '/', not '/' alone, "
            "no trailing '/', no query)")
    return path


@dataclass
class WebApp:
    """A plugin's ASGI app mounted at ``path`` while the orchestrator serves.

    Call it as an ASGI app: requests get the state its lifespan set (as uvicorn gives a
    top-level app), since the server it is mounted in runs no lifespan for it.
    """

    path: str
    app: Any
    plugin: str
    state: dict[str, Any] = field(default_factory=dict)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.state and scope.get("type") in ("http", "websocket"):
            scope = {**scope, "state": {**self.state, **scope.get("state", {})}}
        await self.app(scope, receive, send)


class WebApps:
    """The web apps of one serving host: built, started and stopped together."""

    def __init__(self) -> None:
        self.apps: list[WebApp] = []
        self._stop = anyio.Event()
        self._done: list[anyio.Event] = []

    async def start(self, host: TriggerHost, tg: TaskGroup) -> None:
        """Build each registered web app and run its lifespan's startup (in ``tg``)."""
        from pyagent.plugins import get_runtime

        for path, reg in sorted(get_runtime().registry("web_apps").items()):
            try:
                check_path(path)
                app = reg.obj(host.orchestrator, host)
            except Exception as exc:
                log.error("web app %s of plugin %r not served: %s: %s", path, reg.plugin, type(exc).__name__, exc,
                          exc_info=not isinstance(exc, ConfigurationError))
                continue
            if app is None:  # the plugin has nothing to serve here (it logged why)
                continue
            web = WebApp(path, app, reg.plugin)
            done = anyio.Event()
            problem = await tg.start(self._lifespan, web, done)
            if problem is not None:
                log.error("web app %s of plugin %r not served: its startup failed: %s", path, reg.plugin, problem)
                continue
            self._done.append(done)
            self.apps.append(web)

    async def stop(self) -> None:
        """Run every lifespan's shutdown and wait for it (bounded)."""
        self._stop.set()
        with anyio.move_on_after(LIFESPAN_TIMEOUT):
            for done in self._done:
                await done.wait()

    async def _lifespan(self, web: WebApp, done: anyio.Event, *,
                        task_status: TaskStatus[str | None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Drive the ASGI lifespan protocol: startup, then shutdown once the host stops.

        ``task_status.started(problem)`` once the startup is answered (``problem`` None when it
        worked). An app that does not speak the protocol (it raises before answering) is
        served without a lifespan, as ASGI servers do.
        """
        answered = failed = False
        asked = False
        # Bounds the startup only: lifted once the app says it started.
        bound = anyio.CancelScope(deadline=anyio.current_time() + LIFESPAN_TIMEOUT)

        def answer(problem: str | None) -> None:
            nonlocal answered
            if not answered:
                answered = True
                task_status.started(problem)

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "lifespan.startup"}
            await self._stop.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal failed
            kind = message.get("type")
            if kind == "lifespan.startup.complete":
                bound.deadline = math.inf
                answer(None)
            elif kind == "lifespan.startup.failed":
                failed = True
                answer(str(message.get("message") or "no reason given"))
            elif kind == "lifespan.shutdown.failed":
                log.error("web app %s: its shutdown failed: %s", web.path, message.get("message"))

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": web.state}
        try:
            with bound:
                await web.app(scope, receive, send)
            if bound.cancelled_caught:
                answer(f"its startup took longer than {LIFESPAN_TIMEOUT:g}s")
        except Exception as exc:
            if not answered:
                log.debug("web app %s has no lifespan (%s): served without one", web.path, exc)
            elif not failed:
                log.error("web app %s: its lifespan raised %s: %s", web.path, type(exc).__name__, exc)
        finally:
            answer(None)  # returned without a word about its startup: served as it is
            done.set()
