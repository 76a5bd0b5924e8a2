"""A filesystem-like MCP server, written with the MCP SDK's own server API (``MCPServer``).

It serves one folder (its first argument, or the FILES_ROOT environment variable) and refuses
paths that leave it. Over stdio by default; ``--http PORT`` serves streamable HTTP on
127.0.0.1. An agent uses it with ``tools=[mcp_server("python files_server.py /some/folder")]``
(see docs/mcp.md and examples/mcp_tools.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

args = [a for a in sys.argv[1:] if not a.startswith("--")]
ROOT = Path(args[0] if args else os.environ.get("FILES_ROOT", ".")).resolve()

server = MCPServer("files", instructions=f"Files under {ROOT}; paths are relative to it.",
                   log_level="WARNING")


def _inside(path: str) -> Path:
    target = (ROOT / path).resolve()
    if target != ROOT and ROOT not in target.parents:
        raise ToolError(f"{path!r} is outside the served folder")
    return target


@server.tool()
def list_files(folder: str = ".") -> list[str]:
    """List the files under a folder, as paths relative to the served folder.

    Args:
        folder: The folder to list, relative to the served folder.
    """
    base = _inside(folder)
    return sorted(str(p.relative_to(ROOT)) for p in base.rglob("*") if p.is_file())


@server.tool()
def read_file(path: str) -> str:
    """Read a text file.

    Args:
        path: The file's path, relative to the served folder.
    """
    target = _inside(path)
    if not target.is_file():
        raise ToolError(f"no file {path!r}: list_files shows what there is")
    return target.read_text()


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a text file, creating its folders.

    Args:
        path: The file's path, relative to the served folder.
        content: The text to write.
    """
    target = _inside(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    return f"wrote {len(content)} characters to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file's path, relative to the served folder.
    """
    target = _inside(path)
    if not target.is_file():
        raise ToolError(f"no file {path!r}")
    target.unlink()
    return f"deleted {path}"


@server.tool()
def search(text: str) -> list[str]:
    """Find the files whose content contains a text.

    Args:
        text: The text to look for (case-insensitive).
    """
    needle = text.lower()
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                  if p.is_file() and needle in p.read_text(errors="replace").lower())


if __name__ == "__main__":
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()
