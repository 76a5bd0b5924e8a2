"""Serving the webhook app with uvicorn while the orchestrator serves.

One server per serving orchestrator, on ``host.http_host:host.http_port`` (127.0.0.1 unless
told otherwise; port 0 picks a free one). The web apps other plugins register
(``host.web_apps``, e.g. the dashboard at ``/ui``) are mounted on it, before the webhooks. The socket is bound here, so a port that is taken
fails the start with a clear error and the real port is known before anything is accepted.
Signals are the orchestrator's business: uvicorn's own handlers are not installed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import anyio

from pyagent.plugin import ConfigurationError

log = logging.getLogger("pyagent.webhooks")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response waits ~40 ms for a delayed ACK (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"webhooks cannot listen on {host}:{port}: {exc.strerror or exc} (is another server using the "
            "port? pick another with --port, or 0 for any free one)") from None
    sock.set_inheritable(True)
    return sock


def served_app(host: Any) -> Any:
    """The webhook app, with the host's web apps mounted under their paths before it.

    A web app at a path the status API uses is left out, and a webhook under a web app's
    path is hidden by it: both are logged.
    """
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Mount, Route

    from .app import webhook_app
    from .trigger import RESERVED

    hooks = webhook_app(host.orchestrator, lifespan=False)
    routes: list[Any] = []
    for web in host.web_apps:
        path = web.path
        if any(path == r or path.startswith(r + "/") or r.startswith(path + "/") for r in RESERVED):
            log.error("web app %s (plugin %s) is not served: %s is the webhooks' status API", path, web.plugin, path)
            continue
        for hook in host.triggers("webhook"):
            if hook.path == path or hook.path.startswith(path + "/"):
                log.error("webhook %s is hidden by the web app at %s: move one of them", hook.path, path)

        async def to_slash(request: Any, _path: str = path) -> Any:
            return RedirectResponse(f"{request.scope.get('root_path', '')}{_path}/", status_code=307)

        routes += [Route(path, to_slash, methods=["GET", "HEAD"]), Mount(path, app=web)]
    if not routes:
        return hooks
    return Starlette(routes=[*routes, Mount("", app=hooks)])


async def serve_webhooks(host: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Run uvicorn with the webhook app until cancelled; ``task_status.started()`` once listening."""
    import sniffio

    if host.http_port is None:  # the app is served by someone else (mounted, or run by an ASGI server)
        task_status.started()
        await anyio.sleep_forever()
    if sniffio.current_async_library() != "asyncio":
        raise ConfigurationError("webhooks are served by uvicorn, which needs asyncio: serve the orchestrator "
                                 "under asyncio (pyagent serve does), or mount webhook_app() in your own server")
    import uvicorn


    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = _bind(host.http_host, host.http_port)
    config = uvicorn.Config(served_app(host), lifespan="off", log_level="warning",
                            access_log=False, backlog=4096, timeout_graceful_shutdown=5)
    server = Server(config)
    done = anyio.Event()
    failed: list[BaseException] = []

    async def run() -> None:
        with anyio.CancelScope(shield=True):  # stopped through should_exit, so it closes cleanly
            try:
                await server.serve(sockets=[sock])
            except BaseException as exc:
                failed.append(exc)
            finally:
                done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            while not server.started:
                if done.is_set():
                    raise ConfigurationError(f"the webhook server did not start: {failed[0] if failed else 'it exited'}")
                await anyio.sleep(0.005)
            name, port = sock.getsockname()[:2]
            url = f"http://{f'[{name}]' if ':' in name else name}:{port}"
            host.urls.append(url)
            paths = ", ".join(sorted(w.path for w in host.triggers("webhook")))
            if paths:
                log.info("webhooks listening on %s (%s; status at /runs/{run_id}, health at /healthz)", url, paths)
            else:
                log.info("HTTP server listening on %s (no webhooks; status at /runs/{run_id}, health at /healthz)", url)
            for web in host.web_apps:
                log.info("serving %s (from plugin %s) at %s%s/", web.path, web.plugin, url, web.path)
            task_status.started()
            await anyio.sleep_forever()
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True):
                await done.wait()
            sock.close()
