"""`pyagent mcp serve` driven by the MCP SDK's own client: over stdio (a real subprocess) and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from mcp_helpers import FLOWS, free_port, stop, wait_for_port

pytestmark = pytest.mark.anyio


def serve_params(*extra: str) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "pyagent.cli", "mcp", "serve", str(FLOWS), *extra],
                                 env=dict(os.environ))


async def test_workflows_are_tools_a_call_runs_one_and_progress_arrives() -> None:
    from mcp import Client

    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(60):
        async with Client(serve_params()) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"Research_Report", "echo"}
            report = tools["Research_Report"]
            assert report.title == "Research Report" and "Writes a short report" in (report.description or "")
            # The schema is the workflow's declared input model.
            assert report.input_schema["properties"]["subject"]["type"] == "string"
            assert report.input_schema["required"] == ["subject"]
            assert set(tools["echo"].input_schema["properties"]) == {"input"}

            result = await client.call_tool("Research_Report", {"subject": "tides"}, progress_callback=on_progress)
            assert not result.is_error, result.content
            assert result.content[0].text == "DRAFT FROM NOTES ON TIDES"
            assert result.structured_content is not None
            run_id = result.structured_content["run_id"]
            assert result.structured_content["status"] == "completed"

            # Progress followed the tasks: the run id first, then every task, 3 of 3 at the end.
            assert progress[0][0] == 0 and run_id in (progress[0][2] or "")
            messages = [m for _, _, m in progress]
            for task in ("research", "draft", "review"):
                assert f"task {task!r} completed" in messages
            assert progress[-1][:2] == (3.0, 3.0)

            # The run can be read as a resource, during and after.
            read = await client.read_resource(f"pyagent://runs/{run_id}")
            state = json.loads(read.contents[0].text)
            assert state["status"] == "completed" and state["output"] == "DRAFT FROM NOTES ON TIDES"
            assert [t["task"] for t in state["tasks_done"]] == ["research", "draft", "review"]
            templates = await client.list_resource_templates()
            assert templates.resource_templates[0].uri_template == "pyagent://runs/{run_id}"

            free = await client.call_tool("echo", {"input": {"a": [1, 2]}})
            assert free.structured_content is not None and free.structured_content["output"] == {"echo": {"a": [1, 2]}}

            bad = await client.call_tool("Research_Report", {"words": 2})
            assert bad.is_error and "invalid input for workflow 'Research Report': subject: Field required" in bad.content[0].text


async def test_the_http_transport_with_a_bearer_token() -> None:
    from mcp import Client

    port = free_port()
    env = {**os.environ, "MCP_SERVE_TOKEN": "t0ken"}
    proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "mcp", "serve", f"{FLOWS}:report", "--transport",
                             "http", "--port", str(port), "--token-env", "MCP_SERVE_TOKEN"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await anyio.to_thread.run_sync(wait_for_port, port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        with anyio.fail_after(60):
            async with httpx2.AsyncClient(headers={"Authorization": "Bearer t0ken"}) as http, \
                    Client(streamable_http_client(url, http_client=http)) as client:
                assert [t.name for t in (await client.list_tools()).tools] == ["Research_Report"]
                result = await client.call_tool("Research_Report", {"subject": "rain"})
                assert result.content[0].text == "DRAFT FROM NOTES ON RAIN"
            async with httpx2.AsyncClient() as http:
                refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
                assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
    finally:
        stop(proc)


def test_a_file_without_workflows_is_refused(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from pyagent.cli import main

    path = tmp_path / "agents.py"
    path.write_text("from pyagent import agent\nhelper = agent(lambda x: x, name='helper')\n")
    out = CliRunner().invoke(main, ["mcp", "serve", str(path)])
    assert out.exit_code != 0 and "has no workflow to serve" in out.output


async def test_what_the_file_prints_does_not_reach_the_protocol(tmp_path: Any) -> None:
    from mcp import Client, StdioServerParameters

    path = tmp_path / "noisy.py"
    path.write_text(f"print('loading the noisy flows')\nexec(open({str(FLOWS)!r}).read())\n")
    params = StdioServerParameters(command=sys.executable, args=["-m", "pyagent.cli", "mcp", "serve", f"{path}:echo"],
                                   env=dict(os.environ))
    from mcp.client.stdio import stdio_client

    errlog = (tmp_path / "stderr.txt").open("w")
    try:
        with anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog)) as client:
                assert [t.name for t in (await client.list_tools()).tools] == ["echo"]
                result = await client.call_tool("echo", {"input": "hi"})
                assert result.structured_content is not None
                assert result.structured_content["output"] == {"echo": "hi"}
    finally:
        errlog.close()
    # The line went to stderr, not into the protocol's stream.
    assert "loading the noisy flows" in (tmp_path / "stderr.txt").read_text()
