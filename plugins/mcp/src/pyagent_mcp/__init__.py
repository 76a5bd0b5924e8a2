"""pyagent-mcp: Model Context Protocol servers' tools for agents, and workflows served as MCP tools.

``agent("...", tools=[mcp_server("python files_server.py")])`` gives an agent the tools of an
MCP server (over stdio, or streamable HTTP with ``url=``); ``pyagent mcp serve FILE`` publishes a
file's workflows as the tools of an MCP server. Both are built on the official ``mcp`` SDK,
imported when first used.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .client import DEFAULT_TIMEOUT, MCPServer, MCPServerError, MCPToolError, mcp_server


def _commands() -> Any:
    from .cli import mcp

    return mcp


@hookimpl
def pyagent_register_commands(register: Any) -> None:
    register("mcp", _commands)


__all__ = ["DEFAULT_TIMEOUT", "MCPServer", "MCPServerError", "MCPToolError", "mcp_server"]
