"""A workflow used as an MCP tool: `pyagent mcp serve`, driven by the MCP SDK's own client.

Any MCP client (a desktop assistant, another agent framework) can do what this does: start
`pyagent mcp serve examples/servers/report_flows.py` over stdio, list the tools (one per
workflow, its input schema from the workflow's input_model), call one with a progress
callback, and read the run afterwards as the resource pyagent://runs/{run_id}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

FLOWS = Path(__file__).resolve().parent / "servers" / "report_flows.py"


async def main() -> None:
    server = StdioServerParameters(command=sys.executable, args=["-m", "pyagent.cli", "mcp", "serve", str(FLOWS)],
                                   env=dict(os.environ))

    async def progress(done: float, total: float | None, message: str | None) -> None:
        print(f"  progress {done:g}/{total:g}: {message}")

    with anyio.fail_after(60):
        async with Client(server) as client:
            for tool in (await client.list_tools()).tools:
                print(f"tool {tool.name}: {tool.description}")
                print(f"  input schema: {json.dumps(tool.input_schema['properties'])}")
            result = await client.call_tool("Research_Report", {"subject": "tides"}, progress_callback=progress)
            print("output:", result.content[0].text)
            run_id = result.structured_content["run_id"] if result.structured_content else ""
            run = await client.read_resource(f"pyagent://runs/{run_id}")
            state = json.loads(run.contents[0].text)
            print(f"pyagent://runs/{run_id}: {state['status']}, tasks {[t['task'] for t in state['tasks_done']]}")


if __name__ == "__main__":
    anyio.run(main)
