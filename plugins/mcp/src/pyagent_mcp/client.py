"""MCP servers as tool sources: ``agent("...", tools=[mcp_server("python files_server.py")])``.

A server's tools reach the model with their names, descriptions and JSON schemas, and each call
goes through the agent's tool-call loop like a Python function's (events, the task's record and
the run's history, tool guards, grants). The session to the server is opened the first time an
agent of a workflow run needs it and closed when that run ends (``pool=True``: kept for the life
of the event loop, shared by every run). A server that stops or breaks mid-call fails that call
with :class:`MCPServerError`, which the model reads as the call's result; the run goes on, and the
next call opens a new session.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pyagent.plugin import ConfigurationError, PyAgentError, Tool, ToolScope, shared_tool_scope

DEFAULT_TIMEOUT = 60.0
"""Seconds one tool call may take unless ``timeout=`` (or a task's own deadline) says otherwise."""


class MCPServerError(PyAgentError):
    """An MCP server could not be reached or stopped answering; the call did not complete."""


class MCPToolError(PyAgentError):
    """An MCP server ran the tool and reported that it failed (the tool's own error)."""


def _settings() -> dict[str, Any]:
    """``[tool.pyagent.mcp]`` from the configuration."""
    from pyagent.plugin import get_settings

    return dict(get_settings().mcp)


class MCPServer:
    """The tools of one MCP server, for an agent's ``tools=[...]``; build it with :func:`mcp_server`."""

    def __init__(self, command: str | Sequence[str] | None = None, *, url: str | None = None,
                 name: str | None = None, env: dict[str, str] | None = None, cwd: str | None = None,
                 headers: dict[str, str] | None = None, token: str | None = None,
                 tool_filter: Iterable[str] | Callable[[str], bool] | None = None, prefix: str = "",
                 pool: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        if (command is None) == (url is None):
            raise ConfigurationError(
                "mcp_server(...) needs a command to start the server (stdio) or url= (streamable HTTP), "
                "not both: mcp_server('python files_server.py') or mcp_server(url='http://127.0.0.1:8765/mcp')")
        self.url = url
        self.argv: list[str] = []
        if command is not None:
            self.argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
            if not self.argv:
                raise ConfigurationError("mcp_server(...) got an empty command")
            if self.argv[0] in ("python", "python3"):
                self.argv[0] = sys.executable  # the interpreter pyagent runs on, with its packages
        self.name = name or _default_name(self.argv, url)
        self.env = env
        self.cwd = cwd
        self.headers = dict(headers or {})
        if token:
            self.headers.setdefault("Authorization", f"Bearer {token}")
        if tool_filter is not None and not callable(tool_filter):
            names = tool_filter
            if isinstance(names, str):
                names = [names]
            allowed = frozenset(str(n) for n in names)
            self.tool_filter: Callable[[str], bool] | None = allowed.__contains__
            self.allowed: frozenset[str] | None = allowed
        else:
            self.tool_filter = tool_filter  # type: ignore[assignment]
            self.allowed = None
        if prefix and not re.fullmatch(r"[A-Za-z0-9_-]*", prefix):
            raise ConfigurationError(f"prefix={prefix!r}: use letters, digits, '_' or '-'")
        self.prefix = prefix
        self.pool = pool
        if timeout <= 0:
            raise ConfigurationError(f"timeout= must be a positive number of seconds, got {timeout!r}")
        self.timeout = timeout
        self._key = ("mcp", self.url or tuple(self.argv), tuple(sorted(self.headers.items())), cwd,
                     tuple(sorted((env or {}).items())))

    # -- the session ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The server as a person would name it: its URL or its command."""
        return self.url or " ".join(shlex.quote(a) for a in self.argv)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        from mcp import Client

        if self.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers=self.headers, timeout=httpx2.Timeout(30.0, read=300.0))
            async with http, Client(streamable_http_client(self.url, http_client=http)) as client:
                yield client
            return
        from mcp import StdioServerParameters

        params = StdioServerParameters(command=self.argv[0], args=self.argv[1:],
                                       env={**os.environ, **(self.env or {})}, cwd=self.cwd)
        async with Client(params) as client:
            yield client

    def _scope(self, scope: ToolScope) -> ToolScope:
        return shared_tool_scope() if self.pool else scope

    async def session(self, scope: ToolScope) -> Any:
        """The open client session in ``scope``, opened now if needed."""
        import anyio

        scope = self._scope(scope)
        try:
            with anyio.fail_after(self.timeout):
                return await scope.enter(self._key, self._connect)
        except TimeoutError:
            raise MCPServerError(f"MCP server {self.name!r} ({self.where}) did not start answering within "
                                 f"{self.timeout:g}s: check the command or URL, or raise timeout=") from None
        except Exception as exc:
            raise MCPServerError(f"MCP server {self.name!r} ({self.where}) could not be reached: "
                                 f"{_describe(exc)}; check the command or URL") from exc

    # -- the tool source ------------------------------------------------------------------------

    async def load_tools(self, scope: ToolScope) -> list[Tool]:
        """The server's tools (after ``tool_filter``), listed once per session."""
        target = self._scope(scope)
        listed = target.values.get(self._key)
        if listed is None:
            client = await self.session(scope)
            try:
                listed = await _list_all(client)
            except Exception as exc:
                await target.discard(self._key)
                raise MCPServerError(f"MCP server {self.name!r} ({self.where}) did not list its tools: "
                                     f"{_describe(exc)}") from exc
            target.values[self._key] = listed
        tools = []
        for remote in listed:
            if self.tool_filter is not None and not self.tool_filter(remote.name):
                continue
            tools.append(self._tool(remote, scope))
        return tools

    def _tool(self, remote: Any, scope: ToolScope) -> Tool:
        remote_name = remote.name
        local = self.prefix + re.sub(r"[^A-Za-z0-9_-]", "_", remote_name)[: 64 - len(self.prefix)]

        async def call(arguments: dict[str, Any], ctx: Any) -> Any:
            return await self.call(scope, remote_name, arguments)

        description = remote.description or remote.title or f"the {remote_name} tool of MCP server {self.name}"
        return Tool.from_schema(local, description, dict(remote.input_schema or {}), call)

    async def call(self, scope: ToolScope, tool: str, arguments: dict[str, Any]) -> Any:
        """Call ``tool`` with ``arguments``; the result as text or structured data, or an error."""
        import anyio
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        client = await self.session(scope)
        try:
            with anyio.fail_after(self.timeout):
                result = await client.call_tool(tool, arguments)
        except TimeoutError:
            raise MCPServerError(f"MCP server {self.name!r} did not finish tool {tool!r} within "
                                 f"{self.timeout:g}s (timeout=)") from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise MCPToolError(f"MCP server {self.name!r} refused tool {tool!r}: {exc.message}") from None
            await self._scope(scope).discard(self._key)
            raise MCPServerError(self._stopped(tool, exc)) from None
        except Exception as exc:
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):  # an answer that breaks the protocol, not a broken link
                raise MCPToolError(f"MCP server {self.name!r} answered tool {tool!r} with a result that is "
                                   f"not valid MCP: {_describe(exc)}") from None
            # The transport broke: the process died, the HTTP server went away.
            await self._scope(scope).discard(self._key)
            raise MCPServerError(self._stopped(tool, exc)) from None
        if result.is_error:
            raise MCPToolError(f"tool {tool!r} of MCP server {self.name!r} failed: {_text(result.content)}")
        return _value(result)

    def _stopped(self, tool: str, exc: BaseException) -> str:
        return (f"MCP server {self.name!r} ({self.where}) stopped answering during tool {tool!r} "
                f"({_describe(exc)}): the call did not complete; the next call starts a new session")

    def __repr__(self) -> str:
        return f"mcp_server({self.where!r}, name={self.name!r})"


async def _list_all(client: Any) -> list[Any]:
    tools: list[Any] = []
    cursor = None
    for _ in range(100):  # a server whose pages never end cannot hang the agent
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    if inner:  # an exception group from the SDK's task groups: its first cause says more
        return _describe(inner[0])
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _text(content: Sequence[Any]) -> str:
    parts = []
    for block in content:
        text = getattr(block, "text", None)
        if text is not None:
            parts.append(text)
        elif getattr(block, "type", "") == "resource":
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} {getattr(block, 'mime_type', '')}]".strip())
    return "\n".join(parts)


def _value(result: Any) -> Any:
    """What the model reads: the structured result when the server gives one, else the text."""
    structured = result.structured_content
    if isinstance(structured, dict):
        # MCPServer wraps a plain return value as {"result": value}.
        if set(structured) == {"result"}:
            return structured["result"]
        return structured
    return _text(result.content)


def _default_name(argv: list[str], url: str | None) -> str:
    if url is not None:
        from urllib.parse import urlsplit

        return urlsplit(url).netloc or url
    script = next((a for a in argv[1:] if not a.startswith("-")), argv[0])
    return os.path.splitext(os.path.basename(script))[0] or "mcp"


def mcp_server(command: str | Sequence[str] | None = None, *, url: str | None = None,
               name: str | None = None, **options: Any) -> MCPServer:
    """An MCP server whose tools an agent may call: ``tools=[mcp_server("python files_server.py")]``.

    ``command`` starts the server as a subprocess and talks to it over stdio (``python`` is the
    interpreter pyagent runs on); ``url=`` talks streamable HTTP. A ``command`` that names a
    server of the configuration (``[tool.pyagent.mcp.servers.NAME]``, with ``command`` or
    ``url`` and the options below, ``token_env`` for a bearer token from the environment) uses
    that entry. Options: ``tool_filter`` (the tool names the agent may use, or a function of
    the name), ``prefix`` (put before each tool name, to keep two servers' tools apart),
    ``env``/``cwd`` (for the subprocess), ``headers``/``token`` (for HTTP), ``pool`` (keep the
    session for the life of the event loop instead of one run), ``timeout`` (seconds per call).
    """
    configured = _settings().get("servers", {})
    if isinstance(command, str) and url is None and command in configured:
        entry = dict(configured[command])
        token_env = entry.pop("token_env", None)
        if token_env:
            token = os.environ.get(str(token_env))
            if not token:
                raise ConfigurationError(f"MCP server {command!r} takes its token from ${token_env}, "
                                         "which is not set: export it")
            entry.setdefault("token", token)
        name = name or command
        command, url = entry.pop("command", None), entry.pop("url", None)
        options = {**entry, **options}
    return MCPServer(command, url=url, name=name, **options)


__all__ = ["DEFAULT_TIMEOUT", "MCPServer", "MCPServerError", "MCPToolError", "mcp_server"]
