"""Interoperability with everything installed: a remote A2A agent in team routing, chains and
workflows, served by `pyagent a2a serve` in another process; MCP tools through a model on the
loopback OpenAI-protocol server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyagent import agent, handoff
from pyagent.orchestrator import ExecutionPattern, Task, Workflow

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT / "tests" / "fixtures" / "a2a_weather.py"


@pytest.fixture(scope="module")
def weather_url() -> Iterator[str]:
    """`pyagent a2a serve` in another process, on 127.0.0.1 and a free port."""
    proc = subprocess.Popen([sys.executable, "-m", "pyagent.cli", "a2a", "serve", str(WEATHER), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.match(r"A2A agent '.+' at (\S+) ", line)
            if match:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60) and found, proc.stderr.read() if proc.stderr else ""
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def local_team() -> list[Any]:
    billing = agent(lambda q: "billing answer", name="billing",
                    description="Billing, invoices, payments and refunds")
    support = agent(lambda q: "support answer", name="support",
                    description="Technical support: login problems, errors and crashes")
    return [billing, support]


def test_team_routing_picks_the_remote_agent_by_its_card_and_gets_the_answer(weather_url: str) -> None:
    from pyagent_a2a import remote_agent

    weather = remote_agent(weather_url)
    team = handoff.team([*local_team(), weather])
    result = team.route("Will there be rain and wind in Oslo?")
    assert result.ok, result.error
    assert result.agent == "Weather Desk"
    assert result.output == "forecast for Oslo: rain, then wind (weather desk)"
    [record] = result.handoffs
    assert record.mode == "route" and record.to_agent == "Weather Desk" and record.remote == weather_url
    # A question for a local agent stays local.
    local = team.route("My invoice shows a refund I did not get")
    assert local.agent == "billing" and local.handoffs[0].remote is None


def test_a_remote_agent_in_a_chain_and_in_parallel_workflow_steps(weather_url: str) -> None:
    from pyagent_a2a import remote_agent

    weather = remote_agent(weather_url)
    ask = agent(lambda x: f"weather in {x}?", name="ask")
    chain = handoff.chain([ask, weather], "Lima")
    assert chain.ok and chain.output == "forecast for Lima: rain, then wind (weather desk)"
    assert [r.remote for r in chain.handoffs] == [weather_url]

    wf = Workflow(name="fan", pattern=ExecutionPattern.PARALLEL,
                  steps=[Task(name="remote", agent=weather),
                         Task(name="local", agent=agent(lambda x: x.upper(), name="upper"))])
    result = anyio.run(wf.run, "weather in Cairo")
    assert result.ok, result.error
    assert result.outputs == {"remote": "forecast for Cairo: rain, then wind (weather desk)",
                              "local": "WEATHER IN CAIRO"}


def test_an_openai_protocol_model_calls_mcp_tools(tmp_path: Path) -> None:
    from pyagent_mcp import mcp_server
    from pyagent_openai import OpenAIModel
    from pyagent_openai.testing import ChatServer, reply

    (tmp_path / "plan.txt").write_text("ship on friday")
    server_py = ROOT / "examples" / "servers" / "files_server.py"
    script = [
        reply(tool_calls=[("read_file", {"path": "plan.txt"})]),
        reply("The plan is to ship on friday."),
    ]
    with ChatServer(script) as chat:
        model = OpenAIModel("test-model", base_url=chat.url)
        helper = agent("You read the plan", name="helper", model=model,
                       tools=[mcp_server(f"python {server_py} {tmp_path}", name="files")])
        wf = Workflow(name="plan", steps=[Task(name="read", agent=helper)])
        result = anyio.run(wf.run, "what is the plan?")
        assert result.ok, result.error
        assert result.output == "The plan is to ship on friday."
        sent = chat.requests
        assert {t["function"]["name"] for t in sent[0]["tools"]} >= {"read_file", "list_files"}
        tool_message = sent[1]["messages"][-1]
        assert tool_message["role"] == "tool" and tool_message["content"] == "ship on friday"


def test_a_remote_agent_as_a_supervisors_worker(weather_url: str) -> None:
    from pyagent_a2a import remote_agent

    from pyagent.orchestrator import AgentPatterns

    def boss(task: str, ctx: Any) -> Any:
        if ctx.phase == "plan":
            return ["Will it rain in Oslo?", "Was my last invoice paid?"]
        return " | ".join(str(v) for v in ctx.results.values())

    team = AgentPatterns.supervisor(supervisor=agent(boss, name="boss"),
                                    workers=[remote_agent(weather_url), local_team()[0]])
    result = anyio.run(team.run, "a weather and billing check")
    assert result.ok, result.error
    assert result.assignments == {"Will it rain in Oslo?": "Weather Desk", "Was my last invoice paid?": "billing"}
    assert "forecast for Oslo: rain, then wind (weather desk)" in result.output
