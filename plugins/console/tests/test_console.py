"""ConsoleMonitor on rich's recording console (a terminal) and on a plain file (not a terminal)."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import anyio
import pytest
from pyagent_console import ConsoleMonitor
from rich.console import Console

from pyagent import ConfigurationError, Event, agent
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow
from pyagent.plugins import Runtime, get_runtime

CONTROL = re.compile(r"\x1b|\r")


def terminal() -> Console:
    return Console(record=True, force_terminal=True, width=110, file=io.StringIO(), color_system="truecolor")


def text_of(renderable: Any) -> str:
    out = Console(record=True, width=110, file=io.StringIO())
    out.print(renderable)
    return out.export_text()


def team_agent(x: Any, ctx: Any) -> Any:
    """Sends team events the way team plugins do: broadcast from inside the task's agent."""
    rt = get_runtime()
    base = {"pattern": "consensus"}
    rt.broadcast(Event("team.started", workflow="consensus", run_id=ctx.run_id, data={**base, "agents": ["a", "b"]}))
    for rnd in (1, 2):
        for name in ("a", "b"):
            rt.broadcast(Event("team.turn", workflow="consensus", run_id=ctx.run_id, task=name, status="completed",
                               data={**base, "round": rnd, "phase": "answer", "output": f"answer {rnd}"}))
        rt.broadcast(Event("team.round", workflow="consensus", run_id=ctx.run_id, status="completed",
                           data={**base, "round": rnd, "agreement": 0.5 * rnd}))
    snapshot.append(text_of(current.render()))  # the live view while the team's task still runs
    rt.broadcast(Event("team.completed", workflow="consensus", run_id=ctx.run_id, status="completed",
                       data={**base, "rounds": 2}))
    return "agreed"


snapshot: list[str] = []
current: Any = None


def research(flaky_calls: dict[str, int]) -> Workflow:
    def flaky(x: Any) -> Any:
        flaky_calls["n"] += 1
        if flaky_calls["n"] == 1:
            raise ConnectionError("reset")
        return x

    def down(x: Any) -> Any:
        raise RuntimeError("primary down")

    def route(x: Any, ctx: Any) -> Any:
        ctx.run.record_handoff("triage", "billing", "invoice")
        return x

    inner = Workflow(name="Fact check", steps=[Task(name="Check sources", agent=lambda x: x)])
    return Workflow(name="Research Report", steps=[
        Task(name="Research", agent=flaky, retry_config=RetryConfig(max_retries=2, initial_delay=0)),
        Task(name="Write", agent=down, fallback_agent=agent(lambda x: "draft", name="backup")),
        Task(name="Route", agent=route),
        Task(name="Verify", agent=inner),
        Task(name="Decide", agent=team_agent),
    ])


def test_on_a_terminal_a_live_view_and_a_summary_table(chain_runtime: Runtime) -> None:
    global current
    console = terminal()
    current = monitor = ConsoleMonitor(console)
    assert monitor.live
    snapshot.clear()
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(research({"n": 0}))
    result = anyio.run(orch.run_workflow, "Research Report", "AI")
    monitor.close()
    assert result.ok
    (live,) = snapshot
    lines = live.splitlines()
    assert "Research Report" in lines[0] and "4/5 tasks" in lines[0]

    def line(text: str) -> str:
        return next(x for x in lines if text in x)

    assert "attempts 2" in line("✓ Research ")
    assert "↪ fallback backup" in line("Write")
    assert "⇄ triage → billing" in line("Route")
    assert "▶ Decide" in live  # still running
    # nested workflows and team rounds indented under the task that runs them
    indent = len(line("Verify")) - len(line("Verify").lstrip("│├└─ "))
    nested = line("Fact check")
    assert len(nested) - len(nested.lstrip("│├└─ ")) > indent
    assert len(line("Check sources")) - len(line("Check sources").lstrip("│├└─ ")) > indent
    team = line("◆ consensus")
    assert "round 2" in team and "4 turn(s)" in team and "agreement 1.00" in team
    assert len(team) - len(team.lstrip("│├└─ ")) > indent
    printed = console.export_text()
    assert "Research Report: completed" in printed  # the summary table, printed when the run ended
    for row in ("Research", "Write", "Route", "Verify", "Decide"):
        assert re.search(rf"│ {row}\s+│ ✓ completed", printed), row
    assert re.search(r"│ Research\s+│ ✓ completed\s+│\s+[\d.]+ ms\s+│\s+2 │", printed)
    assert result.run_id in printed


def test_not_on_a_terminal_one_plain_line_per_event(chain_runtime: Runtime) -> None:
    global current
    out = io.StringIO()
    current = monitor = ConsoleMonitor(file=out)
    assert not monitor.live and monitor.render() is None
    snapshot.clear()
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(research({"n": 0}))
    seen: list[str] = []
    orch.add_monitor(lambda e: seen.append(e.kind) if e.kind in monitor.event_kinds else None)
    result = anyio.run(orch.run_workflow, "Research Report", "AI")
    monitor.close()
    text = out.getvalue()
    assert not CONTROL.search(text)
    lines = text.splitlines()
    assert len(lines) == len(seen)  # one line per event
    assert all(re.match(r"\d\d:\d\d:\d\d  ", x) for x in lines)
    body = [x[10:] for x in lines]
    assert body[0] == f"▶ workflow 'Research Report' started (run {result.run_id[:8]})"
    assert "  ↻ Research attempt 1 failed (ConnectionError: reset), retrying in 0 s" in body
    assert any(x.startswith("  ✓ Research ") and x.endswith("(2 attempts)") for x in body)
    assert "  ↪ Write failed (RuntimeError: primary down), falling back to backup (substitute)" in body
    assert "⇄ handoff triage → billing: invoice" in text
    assert "    ▶ workflow 'Fact check' started" in text  # nested under its task
    assert "      ▶ Check sources" in text
    assert "    ◆ consensus round 2 done: agreement 1.00" in text
    assert "      · a (round 1, phase answer)" in text
    assert body[-1].startswith("✓ workflow 'Research Report' completed in ") and body[-1].endswith(": 5 completed")


def test_a_failed_run_in_plain_lines(chain_runtime: Runtime) -> None:
    out = io.StringIO()
    monitor = ConsoleMonitor(file=out)

    def boom(x: Any) -> Any:
        raise ValueError("no data")

    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="W", steps=[Task(name="a", agent=boom), Task(name="b", agent=lambda x: x)]))
    anyio.run(orch.run_workflow, "W")
    text = out.getvalue()
    assert "  ✗ a: ValueError: no data  (1 attempt)" in text
    assert "✗ workflow 'W' failed" in text and "1 failed; error: task 'a' failed: ValueError: no data" in text


HOSTILE = "bad\x1b[2J\x1b[31m input\r\nsecond line [/] [bold red]x"


def test_what_agents_say_cannot_break_plain_lines(chain_runtime: Runtime) -> None:
    """An error's text is the agent's: control codes and line breaks in it stay out of the log."""
    out = io.StringIO()
    monitor = ConsoleMonitor(file=out)

    def boom(x: Any) -> Any:
        raise ValueError(HOSTILE)

    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="W", steps=[Task(name="a", agent=boom)]))
    anyio.run(orch.run_workflow, "W")
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert len(text.splitlines()) == 4  # one line per event: started, task started, task failed, run failed
    assert "second line [/] [bold red]x" in text.splitlines()[2]


def test_what_agents_say_cannot_break_the_live_view(chain_runtime: Runtime) -> None:
    console = terminal()
    monitor = ConsoleMonitor(console)

    def boom(x: Any) -> Any:
        raise ValueError(HOSTILE)

    drawn: list[str] = []

    def look(x: Any) -> Any:
        drawn.append(text_of(monitor.render()))  # what the live view draws while the run goes on
        return x

    errors = chain_runtime.monitor_errors
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="W [bold]", steps=[Task(name="a [/]", agent=boom, continue_on_error=True),
                                                       Task(name="look", agent=look)]))
    anyio.run(orch.run_workflow, "W [bold]")
    monitor.close()
    assert chain_runtime.monitor_errors == errors  # no markup error on the way
    (live,) = drawn
    assert "W [bold]" in live and "a [/]" in live and "second line [/] [bold red]x" in live
    assert "\x1b" not in live
    printed = console.export_text()
    assert "W [bold]: completed" in printed and "│ a [/] " in printed and "second line [/] [bold" in printed


def test_redraws_are_throttled(chain_runtime: Runtime) -> None:
    console = terminal()
    monitor = ConsoleMonitor(console, refresh_per_second=10, max_rows=5)
    orch = Orchestrator(monitors=[monitor])

    async def slowish(x: Any) -> Any:
        await anyio.sleep(0.0005)
        return x

    orch.add_workflow(Workflow(name="Long", steps=[Task(name=f"t{i}", agent=slowish) for i in range(400)]))
    started = time.monotonic()
    anyio.run(orch.run_workflow, "Long")
    took = time.monotonic() - started
    monitor.close()
    assert monitor.view.renders <= took * 10 + 3, (monitor.view.renders, took)
    printed = console.export_text()
    assert "… 395 more completed" in printed  # the summary of a long run stays short


def test_a_long_run_shows_running_and_latest_tasks_only(chain_runtime: Runtime) -> None:
    console = terminal()
    monitor = ConsoleMonitor(console, max_rows=3)
    seen: list[str] = []

    def look(x: Any) -> Any:
        seen.append(text_of(monitor.render()))
        return x

    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="Many", steps=[*[Task(name=f"t{i}", agent=lambda x: x) for i in range(30)],
                                                   Task(name="look", agent=look)]))
    anyio.run(orch.run_workflow, "Many")
    monitor.close()
    (view,) = seen
    assert "… 28 earlier task(s) finished" in view and "t29" in view and "t28" in view and "t5 " not in view


def test_options_are_checked(chain_runtime: Runtime) -> None:
    with pytest.raises(ConfigurationError, match="max_rows"):
        ConsoleMonitor(max_rows=0)
    from pyagent.monitors import ConsoleMonitor as ByClass
    from pyagent.monitors import create

    assert ByClass is ConsoleMonitor
    assert not create("console", file=io.StringIO()).live


def test_pyagent_run_uses_the_console_monitor(chain_runtime: Runtime, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from pyagent.cli import main

    flow = tmp_path / "flow.py"
    flow.write_text("from pyagent.orchestrator import Task, Workflow\n"
                    "wf = Workflow(name='Report', steps=[Task(name='Research', agent=lambda x: 'notes'),"
                    " Task(name='Write', agent=lambda x: x + ' written')])\n")
    out = CliRunner().invoke(main, ["run", str(flow)])
    assert out.exit_code == 0, out.output
    assert "▶ workflow 'Report' started" in out.output  # the console monitor's lines, not the plain ones
    assert "✓ workflow 'Report' completed in " in out.output and "output: 'notes written'" in out.output


def approval_workflow(url: str) -> Workflow:
    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Ship it?", schema=bool)

    return Workflow(name="Ship", steps=[Task(name="Build", agent=lambda x: "built"),
                                        Task(name="Approve", agent=approve)], checkpointing={"storage": url})


def test_a_run_that_waits_for_a_person_in_plain_lines(chain_runtime: Runtime) -> None:
    import uuid

    out = io.StringIO()
    monitor = ConsoleMonitor(file=out)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(approval_workflow(f"memory://console-{uuid.uuid4().hex}"))

    async def go() -> Any:
        waiting = await orch.run_workflow("Ship", wait_for_answers=False)
        (question,) = await orch.apending()
        return waiting, question, await orch.resume(waiting.run_id, {question.id: True})

    waiting, question, done = anyio.run(go)
    monitor.close()
    body = [x[10:] for x in out.getvalue().splitlines()]
    assert f"  ⏸ Approve waits for an answer: Ship it? (question {question.id})" in body
    assert f"⏸ workflow 'Ship' waiting (run {waiting.run_id[:8]})" in body
    assert (f"⏸ workflow 'Ship' suspended: it waits for 1 answer(s) and goes on once answered "
            f"(run {waiting.run_id[:8]})") in body
    assert "  = Build completed earlier, output reused" in body
    assert done.ok and body[-1].startswith("✓ workflow 'Ship' completed")


def test_on_a_terminal_a_waiting_task_and_run_are_shown_waiting(chain_runtime: Runtime) -> None:
    import uuid

    console = terminal()
    monitor = ConsoleMonitor(console=console, refresh_per_second=1000)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(approval_workflow(f"memory://console-{uuid.uuid4().hex}"))

    async def go() -> Any:
        return await orch.run_workflow("Ship", wait_for_answers=False)

    anyio.run(go)
    monitor.close()
    text = console.export_text()
    assert "Ship: waiting" in text
    assert "⏸ waiting" in text and "asks: Ship it?" in text
