"""An MCP server (the SDK's own server API) whose tools misbehave on purpose, for the tests."""

from __future__ import annotations

import os

import anyio
from mcp.server import MCPServer

server = MCPServer("flaky", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Echo a text back."""
    return text


@server.tool()
async def crash(reason: str = "") -> str:
    """Stop the server process in the middle of the call."""
    await anyio.sleep(0.05)
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after a while."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


if __name__ == "__main__":
    server.run()
