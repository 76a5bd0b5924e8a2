"""Agents calling MCP servers' tools over the real protocol: stdio subprocesses and streamable HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_helpers import FILES_SERVER, FLAKY_SERVER, http_files_server
from pyagent_mcp import MCPServerError, mcp_server

from pyagent import ConfigurationError, RunContext, agent
from pyagent.orchestrator import Task, Workflow
from pyagent.plugin import shared_tool_scope
from pyagent.testing import Reply, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk\ncall Ada")
    (tmp_path / "readme.md").write_text("# Project\nA small project.")
    return tmp_path


def files(folder: Path, **options: Any) -> Any:
    return mcp_server(f"python {FILES_SERVER} {folder}", name="files", **options)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_an_agent_calls_a_stdio_servers_tools(folder: Path) -> None:
    model = ScriptedModel([
        tool_call("list_files"),
        tool_call("read_file", path="notes/todo.txt"),
        Reply("You need to buy milk and call Ada."),
    ])
    helper = agent("You answer questions about the files", tools=[files(folder)], model=model)
    events: list[Any] = []
    from pyagent.plugin import get_runtime

    assert await helper.run("What is on my todo list?", RunContext()) == "You need to buy milk and call Ada."
    specs = {t.name: t for t in model.requests[0].tools}
    assert set(specs) == {"list_files", "read_file", "write_file", "delete_file", "search"}
    assert specs["read_file"].parameters["required"] == ["path"]
    assert "Read a text file" in specs["read_file"].description
    # What the tools returned went back to the model.
    assert model.requests[1].messages[-1]["content"] == '["notes/todo.txt", "readme.md"]'
    assert model.requests[2].messages[-1]["content"] == "buy milk\ncall Ada"
    del events, get_runtime


async def test_calls_are_in_the_run_history_and_one_session_serves_the_run(folder: Path, chain_runtime: Any) -> None:
    flaky = mcp_server(f"python {FLAKY_SERVER}", name="flaky")
    first = agent("You look", name="first", tools=[files(folder), flaky],
                  model=ScriptedModel([[tool_call("search", text="milk"), tool_call("pid")], Reply("found")]))
    second = agent("You look again", name="second", tools=[flaky],
                   model=ScriptedModel([tool_call("pid"), Reply("same")]))
    events: list[Any] = []
    wf = Workflow(name="look", steps=[Task(name="first", agent=first), Task(name="second", agent=second)])
    result = await wf.run("where is milk?", on_event=events.append)
    assert result.ok, result.error
    calls = result.tasks["first"].tool_calls
    assert calls is not None
    by_tool = {c["tool"]: c for c in calls}
    assert by_tool["search"]["status"] == "ok" and by_tool["search"]["result"] == '["notes/todo.txt"]'
    pid_first = int(by_tool["pid"]["result"])
    second_calls = result.tasks["second"].tool_calls
    assert second_calls is not None and int(second_calls[0]["result"]) == pid_first  # one process for the run
    kinds = [e.kind for e in events if e.kind.startswith("tool.")]
    assert kinds.count("tool.started") == 3 and kinds.count("tool.called") == 3
    # Closed when the run ended: the server process is gone.
    with anyio.fail_after(10):
        while alive(pid_first):
            await anyio.sleep(0.05)


async def test_a_streamable_http_server(folder: Path) -> None:
    with http_files_server(folder) as url:
        model = ScriptedModel([tool_call("write_file", path="out/hello.txt", content="hi"),
                               tool_call("read_file", path="out/hello.txt"), Reply("written")])
        writer = agent("You write files", tools=[mcp_server(url=url, name="files")], model=model)
        assert await writer.run("write hi", RunContext()) == "written"
    assert (folder / "out" / "hello.txt").read_text() == "hi"
    assert model.requests[2].messages[-1]["content"] == "hi"


async def test_a_server_that_dies_mid_call_fails_the_call_not_the_run(chain_runtime: Any) -> None:
    model = ScriptedModel([tool_call("crash"), tool_call("echo", text="still here"), Reply("recovered")])
    bot = agent("You test", name="bot", tools=[mcp_server(f"python {FLAKY_SERVER}", name="flaky")], model=model)
    wf = Workflow(name="crashy", steps=[Task(name="ask", agent=bot)])
    result = await wf.run("go")
    assert result.ok and result.output == "recovered"
    told = model.requests[1].messages[-1]["content"]
    assert told.startswith("Error: MCPServerError: MCP server 'flaky'")
    assert "stopped answering during tool 'crash'" in told and "the call did not complete" in told
    # The next call opened a new session (a new server process) and worked.
    assert model.requests[2].messages[-1]["content"] == "still here"
    calls = result.tasks["ask"].tool_calls
    assert calls is not None and [c["status"] for c in calls] == ["failed", "ok"]


async def test_tool_filter_denies_a_tool_and_the_denial_is_audited(folder: Path, chain_runtime: Any) -> None:
    model = ScriptedModel([tool_call("delete_file", path="readme.md"), Reply("I may not delete files.")])
    reader = agent("You read files", name="reader", model=model,
                   tools=[files(folder, tool_filter=["list_files", "read_file"])])
    events: list[Any] = []
    wf = Workflow(name="tidy", steps=[Task(name="tidy", agent=reader)])
    result = await wf.run("delete the readme", on_event=events.append)
    assert result.ok
    assert (folder / "readme.md").exists()  # never called
    assert sorted(t.name for t in model.requests[0].tools) == ["list_files", "read_file"]
    assert model.requests[1].messages[-1]["content"].startswith("Error: refused:")
    [denied] = [e for e in events if e.kind == "capability.denied"]
    assert denied.task == "tidy" and denied.data["capability"] == "tool"
    assert denied.data["target"] == "delete_file" and denied.data["agent"] == "reader"
    assert "(allowed: list_files, read_file)" in denied.data["denial"]
    calls = result.tasks["tidy"].tool_calls
    assert calls is not None and calls[0]["status"] == "refused"


async def test_a_pooled_server_is_shared_by_runs_until_the_pool_closes() -> None:
    pids = []
    for _ in range(2):
        bot = agent("You test", tools=[mcp_server(f"python {FLAKY_SERVER}", name="flaky", pool=True)],
                    model=ScriptedModel([tool_call("pid"), Reply("ok")]))
        model = bot.model
        assert await bot.run("pid?", RunContext()) == "ok"
        pids.append(int(model.requests[1].messages[-1]["content"]))
    assert pids[0] == pids[1] and alive(pids[0])
    await shared_tool_scope().aclose()
    with anyio.fail_after(10):
        while alive(pids[0]):
            await anyio.sleep(0.05)


async def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    bot = agent("You test", tools=[mcp_server("python /no/such/server.py", name="ghost", timeout=20)],
                model=ScriptedModel([Reply("never")]))
    with pytest.raises(MCPServerError, match=r"MCP server 'ghost' \(.*server.py\) could not be reached"):
        await bot.run("x", RunContext())


def test_bad_arguments_are_refused_when_the_agent_is_built() -> None:
    with pytest.raises(ConfigurationError, match="needs a command"):
        mcp_server()
    with pytest.raises(ConfigurationError, match="not both"):
        mcp_server("python x.py", url="http://127.0.0.1:1/mcp")


def test_a_server_named_in_the_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyagent.toml").write_text(
        '[mcp.servers.weather]\nurl = "http://127.0.0.1:8765/mcp"\ntoken_env = "WEATHER_TOKEN"\n'
        'tool_filter = ["forecast"]\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"\$WEATHER_TOKEN, which is not set"):
        mcp_server("weather")
    monkeypatch.setenv("WEATHER_TOKEN", "s3cret")
    from pyagent import config

    config.reset()
    server = mcp_server("weather")
    assert server.url == "http://127.0.0.1:8765/mcp" and server.name == "weather"
    assert server.headers["Authorization"] == "Bearer s3cret"
    assert server.allowed == frozenset({"forecast"})
