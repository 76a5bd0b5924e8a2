"""An agent using an MCP server's tools, offline: the files server over stdio, read-only.

The agent gets the tools of examples/servers/files_server.py (an MCP server written with the
MCP SDK), limited by tool_filter to reading; the model is ScriptedModel, so this runs without a
network or an API key. It lists the files, reads one, tries to delete one (refused by the
filter and audited), and answers. Swap the ScriptedModel for model="openai:gpt-4o-mini" and
nothing else changes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio
from pyagent_mcp import mcp_server

from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow
from pyagent.testing import Reply, ScriptedModel, tool_call

SERVER = Path(__file__).resolve().parent / "servers" / "files_server.py"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "todo.txt").write_text("buy milk\ncall Ada\n")
        (Path(folder) / "notes.md").write_text("# Notes\nThe meeting moved to Friday.\n")
        files = mcp_server(f"python {SERVER} {folder}", name="files",
                           tool_filter=["list_files", "read_file", "search"])
        model = ScriptedModel([
            tool_call("list_files"),
            tool_call("read_file", path="todo.txt"),
            tool_call("delete_file", path="todo.txt"),  # not granted: refused, audited
            Reply("Your todo list: buy milk, call Ada. (I may not delete files.)"),
        ])
        assistant = agent("You answer questions about the user's files", name="assistant",
                          tools=[files], model=model)
        workflow = Workflow(name="Files", pattern=ExecutionPattern.SEQUENTIAL,
                            steps=[Task(name="answer", agent=assistant)])
        denied: list[Any] = []
        result = anyio.run(lambda: workflow.run("What is on my todo list? Then delete it.",
                                                on_event=lambda e: denied.append(e) if e.kind == "capability.denied" else None))
        print("answer:", result.output)
        print("tools the model saw:", ", ".join(t.name for t in model.requests[0].tools))
        for call in result.tasks["answer"].tool_calls or []:
            said = call["result"] if call["status"] == "ok" else call["error"]
            print(f"  {call['tool']}({call['arguments']}) -> {call['status']}: {said!r}")
        for event in denied:
            print("audited:", event.data["denial"])
        assert Path(folder, "todo.txt").exists()


if __name__ == "__main__":
    main()
