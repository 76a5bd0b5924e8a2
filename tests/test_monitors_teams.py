"""Monitors with the real team patterns (everything installed): nested spans and indented progress."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyagent import agent, config
from pyagent.monitors import ConsoleMonitor, OpenTelemetryMonitor
from pyagent.orchestrator import AgentPatterns, Orchestrator, Task, Workflow


@pytest.fixture
def traced() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def spans_by_name(exporter: Any) -> tuple[dict[str, list[Any]], Any]:
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    names: dict[str, list[Any]] = {}
    for s in spans:
        names.setdefault(s.name, []).append(s)
    return names, lambda s: None if s.parent is None else by_id.get(s.parent.span_id)


async def teams(task: Any) -> dict[str, Any]:
    async def slow(answer: str) -> Any:
        async def run(x: Any) -> str:
            await anyio.sleep(0.01)
            return answer
        return run

    consensus = await AgentPatterns.consensus(
        agents=[agent(await slow("yes"), name="e1"), agent(await slow("no"), name="e2"),
                agent(await slow("yes"), name="e3")],
        task=task, max_rounds=2, agreement_threshold=1.0)
    debate = await AgentPatterns.debate(pro_agent=agent(lambda x: "upside", name="pro"),
                                        con_agent=agent(lambda x: "risk", name="con"),
                                        judge=agent(lambda x: {"winner": "pro", "conclusion": "go"}, name="judge"),
                                        topic=task, rounds=2)
    thought = await AgentPatterns.chain_of_thought(agent=agent(lambda x: "step done", name="thinker"),
                                                   task=task, steps=["understand", "solve"])

    def manager(x: Any, ctx: Any) -> Any:
        return ["find sources", "crunch numbers"] if ctx.phase == "plan" else "report"

    team = AgentPatterns.supervisor(supervisor=agent(manager, name="manager"),
                                    workers=[agent(await slow("R"), name="researcher"),
                                             agent(await slow("A"), name="analyst")])
    supervised = await team.run(task)
    return {"consensus": consensus.rounds, "debate": debate.verdict.winner, "steps": len(thought.steps),
            "supervisor": supervised.output}


def test_team_patterns_inside_a_task_are_nested_spans(runtime: Any, traced: Any) -> None:
    provider, exporter = traced
    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(Workflow(name="Decide", steps=[Task(name="deliberate", agent=teams)]))
    result = anyio.run(orch.run_workflow, "Decide", "adopt it?")
    assert result.ok and result.output == {"consensus": 2, "debate": "pro", "steps": 2, "supervisor": "report"}
    names, parent = spans_by_name(exporter)
    (task_span,) = names["invoke_agent teams"]
    team_spans = {s.attributes["pyagent.pattern"]: s for s in exporter.get_finished_spans()
                  if s.name.startswith("invoke_workflow") and s.attributes.get("pyagent.pattern")}
    assert set(team_spans) == {"consensus", "debate", "chain_of_thought", "supervisor"}
    for span in team_spans.values():
        assert parent(span) is task_span

    # consensus: a span per round, the three answers of a round inside it, concurrent from its start
    consensus = team_spans["consensus"]
    rounds = sorted((s for s in names["round 1"] + names["round 2"] if parent(s) is consensus),
                    key=lambda s: s.start_time)
    assert [r.attributes["pyagent.round"] for r in rounds] == [1, 2]
    for r in rounds:
        turns = [s for s in exporter.get_finished_spans() if parent(s) is r]
        assert sorted(t.attributes["gen_ai.agent.name"] for t in turns) == ["e1", "e2", "e3"]
        assert all(t.start_time == r.start_time and t.end_time <= r.end_time for t in turns)
        assert all(t.end_time - t.start_time >= 5_000_000 for t in turns)  # each slept 10 ms

    # debate: rounds of pro then con, one after the other; the judge after the rounds
    debate = team_spans["debate"]
    debate_rounds = [s for s in exporter.get_finished_spans() if parent(s) is debate and s.name.startswith("round")]
    assert len(debate_rounds) == 2
    for r in debate_rounds:
        pro, con = sorted((s for s in exporter.get_finished_spans() if parent(s) is r), key=lambda s: s.start_time)
        assert (pro.attributes["gen_ai.agent.name"], con.attributes["gen_ai.agent.name"]) == ("pro", "con")
        assert pro.end_time <= con.start_time
    (judge,) = [s for s in names["invoke_agent judge"] if parent(s) is debate]
    assert judge.start_time >= max(r.end_time for r in debate_rounds)

    # chain of thought: a span per step, in order
    steps = sorted((s for s in exporter.get_finished_spans() if parent(s) is team_spans["chain_of_thought"]),
                   key=lambda s: s.start_time)
    assert [s.attributes["pyagent.step"] for s in steps] == ["understand", "solve"]
    assert steps[0].end_time <= steps[1].start_time

    # supervisor: each subtask from its delegation to its answer, inside round 1
    supervisor = team_spans["supervisor"]
    (round_one,) = [s for s in names["round 1"] if parent(s) is supervisor]
    subtasks = {s.attributes.get("pyagent.subtask"): s for s in exporter.get_finished_spans()
                if parent(s) is round_one and s.attributes.get("pyagent.phase") == "work"}
    assert set(subtasks) == {"find sources", "crunch numbers"}
    assert subtasks["find sources"].attributes["gen_ai.agent.name"] == "researcher"
    assert all(s.end_time - s.start_time >= 5_000_000 for s in subtasks.values())
    assert any(e.name == "pyagent.handoff" for e in task_span.events)  # the delegations, audited
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 1


def test_a_team_outside_any_workflow_reaches_configured_monitors(runtime: Any, traced: Any, tmp_path: Any,
                                                                 monkeypatch: Any) -> None:
    provider, exporter = traced
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyagent.toml").write_text('monitors = ["otel"]\n')
    from opentelemetry import trace

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)  # "the application configured OpenTelemetry"
    result = AgentPatterns.consensus(agents=[agent(lambda x: "yes", name="a"), agent(lambda x: "yes", name="b")],
                                     task="agree?")
    assert result.reached
    names, parent = spans_by_name(exporter)
    (team,) = names["invoke_workflow consensus"]
    assert parent(team) is None and {s.attributes["gen_ai.agent.name"] for s in names["invoke_agent a"]} == {"a"}
    config.reset()


def test_console_lines_show_team_rounds_under_their_task(runtime: Any) -> None:
    out = io.StringIO()
    monitor = ConsoleMonitor(file=out)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="Decide", steps=[Task(name="deliberate", agent=teams)]))
    assert anyio.run(orch.run_workflow, "Decide", "adopt it?").ok
    text = out.getvalue()
    assert "    ◆ consensus started with e1, e2, e3" in text
    assert "      · e2 (round 2, phase revise)" in text
    assert "    ◆ consensus round 1 done: agreement 0.67" in text
    assert "    ◆ debate round 2 done" in text
    assert "      · thinker (round 2, step solve)" in text
    assert "      · researcher (round 1, phase work, subtask find sources)" in text
