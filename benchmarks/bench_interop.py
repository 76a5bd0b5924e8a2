"""Per-call cost of MCP tool calls (stdio and streamable HTTP) and A2A round trips through pyagent,
against the SDKs' own clients calling the same servers in the same run. Goal: pyagent <= 1.2x.

- MCP: the example files server (examples/servers/files_server.py, the SDK's MCPServer) reads a
  small file. The SDK's ``Client`` calls ``read_file`` N times; pyagent's agent makes the same N
  calls through its tool-call loop (a ScriptedModel asks for them one after another), inside a
  workflow run, so each call also passes the events, the task record and the grant check.
- A2A: ``pyagent a2a serve`` publishes a one-task workflow. The SDK's client (``create_client``
  from the card, streaming as the card says) sends N messages and reads each task to its end;
  ``remote_agent(url).run(...)`` does the same N times.

Servers run in their own processes. Each figure is the best of ROUNDS rounds (the two sides
alternate), after a warm-up.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "examples" / "servers" / "files_server.py"
N_MCP = 300
N_A2A = 150
ROUNDS = 3
ECHO_FLOW = '''
from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

echo = Workflow(name="Echo", pattern=ExecutionPattern.SEQUENTIAL, description="Echoes its input",
                steps=[Task(name="echo", agent=agent(lambda x: x, name="echo"))])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# -- MCP ------------------------------------------------------------------------------------


async def sdk_mcp(target: Any, n: int) -> float:
    from mcp import Client

    async with Client(target) as client:
        await client.call_tool("read_file", {"path": "a.txt"})  # warm
        started = time.perf_counter()
        for _ in range(n):
            result = await client.call_tool("read_file", {"path": "a.txt"})
            assert not result.is_error
        return (time.perf_counter() - started) / n


async def pyagent_mcp(source: Any, n: int) -> float:
    from pyagent import agent
    from pyagent.orchestrator import ExecutionPattern, Task, Workflow
    from pyagent.testing import Reply, ScriptedModel, tool_call

    calls = [tool_call("read_file", path="a.txt") for _ in range(n + 1)]
    reader = agent("You read", name="reader", tools=[source], max_tool_calls=n + 1,
                   model=ScriptedModel([*calls, Reply("done")]))
    marks: list[float] = []

    def on_event(event: Any) -> None:
        if event.kind == "tool.called":
            marks.append(time.perf_counter())

    wf = Workflow(name="read", pattern=ExecutionPattern.SEQUENTIAL, steps=[Task(name="read", agent=reader)])
    result = await wf.run("read it", on_event=on_event)
    assert result.ok, result.error
    # From the first call's end (the session is open, as in the SDK's loop) to the last's.
    return (marks[-1] - marks[0]) / n


def mcp_figures(label: str, sdk_target: Any, source: Any) -> tuple[float, float]:
    import anyio

    best_sdk = best_pyagent = float("inf")
    for _ in range(ROUNDS):
        best_sdk = min(best_sdk, anyio.run(sdk_mcp, sdk_target, N_MCP))
        best_pyagent = min(best_pyagent, anyio.run(pyagent_mcp, source, N_MCP))
    report(f"MCP tool call over {label}", best_sdk, best_pyagent, N_MCP)
    return best_sdk, best_pyagent


# -- A2A ------------------------------------------------------------------------------------


async def sdk_a2a(url: str, n: int) -> float:
    from a2a.client import ClientConfig, create_client
    from a2a.helpers import get_artifact_text
    from a2a.types import Message, Part, Role, SendMessageRequest
    from pyagent_a2a import fetch_card

    card = fetch_card(url)
    client = await create_client(card, client_config=ClientConfig(streaming=True))
    try:
        async def once(i: int) -> str:
            request = SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id=f"m{i}-{time.time_ns()}",
                                                         parts=[Part(text=f"hello {i}")]))
            text = ""
            async for event in client.send_message(request):
                if event.HasField("artifact_update") and event.artifact_update.artifact.name == "output":
                    text = get_artifact_text(event.artifact_update.artifact)
            return text

        await once(-1)
        started = time.perf_counter()
        for i in range(n):
            assert await once(i) == f"hello {i}"
        return (time.perf_counter() - started) / n
    finally:
        await client.close()


async def pyagent_a2a(url: str, n: int) -> float:
    from pyagent_a2a import remote_agent

    from pyagent import RunContext

    remote = remote_agent(url)
    await remote.run("warm", RunContext())
    started = time.perf_counter()
    for i in range(n):
        assert await remote.run(f"hello {i}", RunContext()) == f"hello {i}"
    return (time.perf_counter() - started) / n


def report(what: str, sdk: float, ours: float, n: int) -> None:
    ratio = ours / sdk
    verdict = "ok" if ratio <= 1.2 else "over the 1.2x goal"
    print(f"{what}: SDK client {sdk * 1e3:.3f} ms/call, pyagent {ours * 1e3:.3f} ms/call, "
          f"ratio {ratio:.2f}x ({verdict}; best of {ROUNDS} rounds of {n} calls)", flush=True)


def main() -> None:
    import anyio
    from mcp import StdioServerParameters
    from pyagent_mcp import mcp_server

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "a.txt").write_text("a small file\n")
        # stdio: every session starts its own server process.
        params = StdioServerParameters(command=sys.executable, args=[str(FILES), folder], env=dict(os.environ))
        mcp_figures("stdio", params, mcp_server(f"python {FILES} {folder}", name="files"))
        # streamable HTTP: one server process for both clients.
        port = free_port()
        http = subprocess.Popen([sys.executable, str(FILES), folder, "--http", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            url = f"http://127.0.0.1:{port}/mcp"
            mcp_figures("streamable HTTP", url, mcp_server(url=url, name="files"))
        finally:
            http.terminate()
            http.wait(timeout=15)

        flow = Path(folder, "echo_flow.py")
        flow.write_text(ECHO_FLOW)
        served = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "a2a", "serve", str(flow), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert served.stdout is not None
            url = ""
            for line in served.stdout:
                found = re.match(r"A2A agent '.+' at (\S+) ", line)
                url = found.group(1) if found else url
                if line.startswith("serving on "):
                    break
            best_sdk = best_pyagent = float("inf")
            for _ in range(ROUNDS):
                best_sdk = min(best_sdk, anyio.run(sdk_a2a, url, N_A2A))
                best_pyagent = min(best_pyagent, anyio.run(pyagent_a2a, url, N_A2A))
            report("A2A round trip (streamed task, one-task workflow)", best_sdk, best_pyagent, N_A2A)
        finally:
            served.terminate()
            served.wait(timeout=15)
            if served.stdout is not None:
                served.stdout.close()


if __name__ == "__main__":
    main()
