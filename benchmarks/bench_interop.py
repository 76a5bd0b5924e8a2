"""Per-call cost of MCP tool calls (stdio and streamable HTTP) and A2A round trips through pyagent,
against the SDKs' own clients calling the same servers in the same run. Goal: pyagent <= 1.2x.

- MCP: the example files server (examples/servers/files_server.py, the SDK's MCPServer) reads a
  small file. The SDK's ``Client`` calls ``read_file`` N times; pyagent's agent makes the same N
  calls through its tool-call loop (a ScriptedModel asks for them one after another), inside a
  workflow run. pyagent's figure is each call from its ``tool.started`` event to its
  ``tool.called`` event: argument parsing, guards, the session lookup, the SDK call, the
  result's conversion, the task record. The whole loop turn (with the model's answer, which no
  tool call has outside an agent) is printed beside it.
- A2A: ``pyagent a2a serve`` publishes a one-task workflow. The SDK's client (from the card,
  streaming as the card says, on the HTTP settings remote agents use) sends N messages and reads
  each task to its end; ``remote_agent(url).run(...)`` does the same N times.

Servers run in their own processes. The two sides take turns call by call in one process, so a
busy machine slows both alike; the figures are medians (and the best single calls), after a
warm-up.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "examples" / "servers" / "files_server.py"
N_MCP = 500
N_A2A = 200
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


async def mcp_interleaved(sdk_target: Any, source: Any, n: int) -> tuple[list[float], list[float], list[float]]:
    """Per-call times of the SDK's client and of pyagent's loop, one call of each in turn.

    The agent's model is a function: each of its turns first makes one direct SDK call (timed),
    then asks pyagent's loop for the next tool call, so both sides share the same moments of a
    busy machine. Returns (SDK calls, pyagent calls from tool.started to tool.called, pyagent
    whole loop turns).
    """
    from mcp import Client

    from pyagent import agent
    from pyagent.orchestrator import ExecutionPattern, Task, Workflow
    from pyagent.testing import Reply, ScriptedModel, tool_call

    sdk_times: list[float] = []
    async with Client(sdk_target) as client:
        await client.list_tools()  # as pyagent lists them: results are then checked against known schemas
        await client.call_tool("read_file", {"path": "a.txt"})
        turns = 0

        async def model(prompt: str) -> Any:
            nonlocal turns
            turns += 1
            started = time.perf_counter()
            result = await client.call_tool("read_file", {"path": "a.txt"})
            sdk_times.append(time.perf_counter() - started)
            assert not result.is_error
            return tool_call("read_file", path="a.txt") if turns <= n + 1 else Reply("done")

        reader = agent("You read", name="reader", tools=[source], max_tool_calls=n + 1, model=ScriptedModel(model))
        started_at: dict[str, float] = {}
        spans: list[float] = []
        ends: list[float] = []

        def on_event(event: Any) -> None:
            now = time.perf_counter()
            if event.kind == "tool.started":
                started_at[event.data["call_id"]] = now
            elif event.kind == "tool.called":
                spans.append(now - started_at[event.data["call_id"]])
                ends.append(now)

        wf = Workflow(name="read", pattern=ExecutionPattern.SEQUENTIAL, steps=[Task(name="read", agent=reader)])
        result = await wf.run("read it", on_event=on_event)
        assert result.ok, result.error
    # pyagent's first call opened the session (the SDK's was open before): left out.
    turns_taken = [b - a for a, b in itertools.pairwise(ends)]
    return sdk_times[1:], spans[1:], turns_taken


def mcp_figures(label: str, sdk_target: Any, source: Any) -> None:
    import anyio

    sdk, calls, turns = anyio.run(mcp_interleaved, sdk_target, source, N_MCP)
    report(f"MCP tool call over {label}", sdk, calls)
    print(f"  (a whole tool-call turn of the agent's loop, the scripted model's turn included, which here "
          f"also makes the SDK's call: median {statistics.median(turns) * 1e3:.3f} ms)", flush=True)


# -- A2A ------------------------------------------------------------------------------------


async def a2a_interleaved(url: str, n: int) -> tuple[list[float], list[float], list[float]]:
    """Per round trip: the SDK's client, remote_agent, and the SDK's client on its default HTTP client, in turn."""
    from a2a.client import ClientConfig, ClientFactory, create_client
    from a2a.helpers import get_artifact_text
    from a2a.types import Message, Part, Role, SendMessageRequest
    from pyagent_a2a import fetch_card, http_client, remote_agent

    from pyagent import RunContext

    card = fetch_card(url)
    # The SDK's client on the same HTTP settings as remote agents (Nagle off), so the ratio is
    # what pyagent adds; the SDK's default HTTP client is measured too, for reference.
    http = http_client()
    client = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
    default = await create_client(card, client_config=ClientConfig(streaming=True))
    remote = remote_agent(url)
    sdk_times: list[float] = []
    ours: list[float] = []
    plain: list[float] = []
    try:
        async def sdk_once(i: int, client: Any = client) -> str:
            request = SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id=f"m{i}-{time.time_ns()}",
                                                         parts=[Part(text=f"hello {i}")]))
            text = ""
            async for event in client.send_message(request):
                if event.HasField("artifact_update") and event.artifact_update.artifact.name == "output":
                    text = get_artifact_text(event.artifact_update.artifact)
            return text

        await sdk_once(-1)
        await remote.run("warm", RunContext())
        for i in range(n):
            started = time.perf_counter()
            assert await sdk_once(i) == f"hello {i}"
            sdk_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert await remote.run(f"hello {i}", RunContext()) == f"hello {i}"
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert await sdk_once(i, default) == f"hello {i}"
            plain.append(time.perf_counter() - started)
    finally:
        await client.close()
        await default.close()
        await http.aclose()
    return sdk_times, ours, plain


def report(what: str, sdk: list[float], ours: list[float]) -> None:
    a, b = statistics.median(sdk), statistics.median(ours)
    ratio = b / a
    verdict = "ok" if ratio <= 1.2 else "over the 1.2x goal"
    print(f"{what}: SDK client {a * 1e3:.3f} ms/call, pyagent {b * 1e3:.3f} ms/call (medians of {len(sdk)} "
          f"interleaved calls each; best {min(sdk) * 1e3:.3f} / {min(ours) * 1e3:.3f} ms), "
          f"ratio {ratio:.2f}x ({verdict})", flush=True)


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
            sdk, ours, plain = anyio.run(a2a_interleaved, url, N_A2A)
            report("A2A round trip (streamed task, one-task workflow)", sdk, ours)
            print(f"  (the SDK's client on its default HTTP client: median {statistics.median(plain) * 1e3:.3f} ms)",
                  flush=True)
        finally:
            served.terminate()
            served.wait(timeout=15)
            if served.stdout is not None:
                served.stdout.close()


if __name__ == "__main__":
    main()
