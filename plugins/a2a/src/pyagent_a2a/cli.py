"""``pyagent a2a serve``: a file's workflows (or agents) as A2A agents, one Agent Card each."""

from __future__ import annotations

import os
import socket
from typing import Any

import click


@click.group()
def a2a() -> None:
    """Agent2Agent: serve workflows and agents to other agent systems."""


def _secret(option: str | None, setting: Any, what: str) -> str | None:
    var = option or setting
    if not var:
        return None
    value = os.environ.get(str(var))
    if not value:
        raise click.ClickException(f"the {what} comes from ${var}, which is not set: export it")
    return value


@a2a.command()
@click.argument("target")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9999, show_default=True, help="Port to listen on (0 picks a free one).")
@click.option("--token-env", default=None, help="Environment variable holding the bearer token clients must "
              "send. Default: [tool.pyagent.a2a.serve] token_env, if set.")
@click.option("--api-key-env", default=None, help="Environment variable holding the API key clients may send "
              "instead (header --api-key-header). Default: [tool.pyagent.a2a.serve] api_key_env.")
@click.option("--api-key-header", default=None, help="The API key's header (default X-API-Key).")
def serve(target: str, host: str, port: int, token_env: str | None, api_key_env: str | None,
          api_key_header: str | None) -> None:
    """Serve the workflows of FILE[:NAME] (or its agents, if it has no workflow) over A2A.

    Each gets an Agent Card and a JSON-RPC endpoint under /<name>/ (at the root when there is
    one); the URLs are printed once the server listens.
    """
    import anyio

    from pyagent.plugin import get_settings, load_target
    from pyagent_a2a.server import Credentials, build_app

    loaded = load_target(target)
    settings = dict(get_settings().a2a.get("serve", {}))
    credentials = Credentials(
        token=_secret(token_env, settings.get("token_env"), "bearer token"),
        api_key=_secret(api_key_env, settings.get("api_key_env"), "API key"),
        api_key_header=api_key_header or settings.get("api_key_header") or "X-API-Key")
    # Bound here, not by uvicorn, so the cards can name the port --port 0 picked. The protocol
    # is given so asyncio turns Nagle's algorithm off on accepted connections (it does for TCP
    # sockets only): with it on, each streamed event waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from None
    bound = sock.getsockname()[1]
    app, urls = build_app(loaded, f"http://{host}:{bound}", credentials)

    async def go() -> None:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

        async def announce() -> None:
            while not server.started:
                await anyio.sleep(0.01)
            for name, url in urls.items():
                click.echo(f"A2A agent {name!r} at {url} (card: {url}.well-known/agent-card.json)")
            auth = " and ".join(w for w in ("bearer token" if credentials.token else "",
                                            "API key" if credentials.api_key else "") if w)
            click.echo(f"serving on http://{host}:{bound}" + (f", requiring a {auth}" if auth else ""), )

        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    try:
        anyio.run(go)
    finally:
        sock.close()
