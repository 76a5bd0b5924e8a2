"""``pyagent mcp serve``: a file's workflows as the tools of an MCP server."""

from __future__ import annotations

import os
import sys
from typing import Any

import click


@click.group()
def mcp() -> None:
    """Model Context Protocol: serve workflows as MCP tools."""


@mcp.command()
@click.argument("target")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio: one client that started this process; http: streamable HTTP on --host/--port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (http).")
@click.option("--port", default=8765, show_default=True, help="Port to listen on (http; 0 picks a free one).")
@click.option("--path", default="/mcp", show_default=True, help="The endpoint's path (http).")
@click.option("--token-env", default=None,
              help="Environment variable holding the bearer token clients must send (http). "
                   "Default: [tool.pyagent.mcp.serve] token_env, if set.")
def serve(target: str, transport: str, host: str, port: int, path: str, token_env: str | None) -> None:
    """Serve the workflows of FILE[:ORCHESTRATOR] as MCP tools.

    Each workflow is a tool (its input schema from the workflow's input_model, else one free
    `input`); a call runs it and returns its output, with progress notifications as its tasks
    finish and the run readable as the resource pyagent://runs/{run_id}.
    """
    import contextlib

    import anyio

    from pyagent.plugin import get_settings, load_target
    from pyagent_mcp.server import build_server, serve_http, serve_stdio

    # Over stdio, stdout is the protocol's: what the file prints while it loads goes to stderr
    # (while serving, the SDK diverts it there itself).
    with contextlib.redirect_stdout(sys.stderr if transport == "stdio" else sys.stdout):
        loaded = load_target(target)
    if not loaded.workflows:
        raise click.ClickException(f"{loaded.path} has no workflow to serve (only agents): MCP tools are "
                                   "workflows; wrap the agent in a Workflow with one Task")
    server = build_server(loaded)
    if transport == "stdio":
        anyio.run(serve_stdio, server)
        return
    settings = dict(get_settings().mcp.get("serve", {}))
    token_env = token_env or settings.get("token_env")
    token = None
    if token_env:
        token = os.environ.get(str(token_env))
        if not token:
            raise click.ClickException(f"the bearer token comes from ${token_env}, which is not set: export it")

    def ready(url: str) -> None:
        names = ", ".join(sorted(loaded.workflows))
        click.echo(f"MCP server listening on {url} (workflows: {names})", err=True)
        sys.stderr.flush()

    async def go() -> Any:
        await serve_http(server, host=host, port=port, path=path, token=token, ready=ready)

    anyio.run(go)
