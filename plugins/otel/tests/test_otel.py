"""OpenTelemetryMonitor: spans read back from the SDK's in-memory exporter, metrics from a reader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest
from pyagent_otel import OpenTelemetryMonitor

from pyagent import Event
from pyagent.orchestrator import Orchestrator, RetryConfig, Task, Workflow
from pyagent.plugins import Runtime, get_runtime


def tree(exporter: Any) -> tuple[dict[str, list[Any]], Any]:
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    names: dict[str, list[Any]] = {}
    for s in spans:
        names.setdefault(s.name, []).append(s)

    def parent(span: Any) -> Any:
        return None if span.parent is None else by_id.get(span.parent.span_id)

    return names, parent


@pytest.mark.anyio
async def test_runs_attempts_and_nested_workflows(chain_runtime: Runtime, traced: Any) -> None:
    provider, exporter = traced
    calls = {"n": 0}

    def flaky(x: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("reset by peer")
        return x

    def down(x: Any) -> Any:
        raise ValueError("bad input")

    def hands_off(x: Any, ctx: Any) -> Any:
        ctx.run.record_handoff("router", "billing", "invoice question")
        return x

    inner = Workflow(name="Inner", steps=[Task(name="inner step", agent=lambda x: x)])
    wf = Workflow(name="Research Report", steps=[
        Task(name="Research", agent=flaky, retry_config=RetryConfig(max_retries=2, initial_delay=0)),
        Task(name="Write", agent=down, fallback_agent=lambda x: "backup text"),
        Task(name="Route", agent=hands_off),
        Task(name="Nested", agent=inner),
    ])
    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(wf)
    result = await orch.run_workflow("Research Report", "AI")
    assert result.ok
    names, parent = tree(exporter)
    (run,) = names["invoke_workflow Research Report"]
    assert parent(run) is None
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["gen_ai.workflow.name"] == "Research Report"
    assert run.attributes["pyagent.run_id"] == result.run_id
    first, second = sorted(names["invoke_agent flaky"], key=lambda s: s.attributes["pyagent.attempt"])
    for span in (first, second):
        assert parent(span) is run
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert span.attributes["gen_ai.agent.name"] == "flaky"
        assert span.attributes["gen_ai.workflow.name"] == "Research Report"
        assert span.attributes["pyagent.task"] == "Research"
    assert (first.attributes["pyagent.attempt"], second.attributes["pyagent.attempt"]) == (1, 2)
    assert first.attributes["error.type"] == "ConnectionError" and first.status.status_code.name == "ERROR"
    assert [e.name for e in first.events] == ["pyagent.retry"]
    assert second.status.status_code.name == "UNSET" and "error.type" not in second.attributes
    (primary,) = names["invoke_agent down"]
    assert primary.attributes["error.type"] == "ValueError"
    assert [e.name for e in primary.events] == ["pyagent.fallback"]
    assert primary.events[0].attributes["pyagent.fallback.agent"] == "agent"
    fallback = next(s for s in names["invoke_agent agent"] if s.attributes.get("pyagent.task") == "Write")
    assert fallback.attributes["pyagent.attempt"] == 2 and parent(fallback) is run
    (route,) = names["invoke_agent hands_off"]
    (handoff,) = route.events
    assert handoff.name == "pyagent.handoff" and handoff.attributes["pyagent.handoff.to"] == "billing"
    (nested_task,) = names["invoke_agent Inner"]
    (inner_run,) = names["invoke_workflow Inner"]
    assert parent(inner_run) is nested_task  # the sub-workflow runs inside its task's agent span
    inner_step = next(s for s in names["invoke_agent agent"] if s.attributes.get("pyagent.task") == "inner step")
    assert parent(inner_step) is inner_run
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 1


@pytest.mark.anyio
async def test_the_agents_own_spans_nest_under_its_invoke_agent_span(chain_runtime: Runtime, traced: Any) -> None:
    provider, exporter = traced
    app = provider.get_tracer("app")

    async def query_database(x: Any) -> Any:
        with app.start_as_current_span("SELECT orders"):
            await anyio.sleep(0)
        return x

    def blocking_http(x: Any) -> Any:
        with app.start_as_current_span("GET /rates"):
            return x

    from pyagent import agent

    wf = Workflow(name="Lookup", steps=[
        Task(name="db", agent=query_database),
        Task(name="http", agent=agent(blocking_http, name="rates", thread=True)),
    ])
    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(wf)
    assert (await orch.run_workflow("Lookup", 1)).ok
    names, parent = tree(exporter)
    assert parent(names["SELECT orders"][0]) is names["invoke_agent query_database"][0]
    assert parent(names["GET /rates"][0]) is names["invoke_agent rates"][0]  # in a worker thread too
    from opentelemetry import trace

    assert not trace.get_current_span().is_recording()  # nothing left attached after the run


@pytest.mark.anyio
async def test_tool_spans_pair_by_call_id_and_usage_lands_on_the_agent(chain_runtime: Runtime, traced: Any) -> None:
    provider, exporter = traced

    def llm_like(x: Any, ctx: Any) -> Any:
        emit = ctx.run.emit
        task = ctx.task.name
        emit("tool.started", task, agent="assistant", tool="search", call_id="c1", arguments={"q": "x"})
        emit("tool.started", task, agent="assistant", tool="calculator", call_id="c2", arguments={"e": "1/0"})
        emit("tool.failed", task, agent="assistant", tool="calculator", call_id="c2", duration=0.01,
             error="ZeroDivisionError: division by zero")
        emit("tool.called", task, agent="assistant", tool="search", call_id="c1", duration=0.2, result="found")
        emit("model.usage", task, agent="assistant", model="gpt-4o-mini", input_tokens=100, output_tokens=20)
        emit("model.usage", task, agent="assistant", model="gpt-4o-mini", input_tokens=50, output_tokens=5)
        return "answer"

    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(Workflow(name="Assist", steps=[Task(name="ask", agent=llm_like)]))
    assert (await orch.run_workflow("Assist")).ok
    names, parent = tree(exporter)
    (agent_span,) = names["invoke_agent llm_like"]
    (search,) = names["execute_tool search"]
    (calc,) = names["execute_tool calculator"]
    assert parent(search) is agent_span and parent(calc) is agent_span
    assert search.attributes["gen_ai.operation.name"] == "execute_tool"
    assert search.attributes["gen_ai.tool.call.id"] == "c1" and search.status.status_code.name == "UNSET"
    assert calc.attributes["error.type"] == "ZeroDivisionError" and calc.status.status_code.name == "ERROR"
    assert search.end_time > calc.end_time  # each ended by its own call id
    assert agent_span.attributes["gen_ai.usage.input_tokens"] == 150
    assert agent_span.attributes["gen_ai.usage.output_tokens"] == 25
    assert agent_span.attributes["gen_ai.request.model"] == "gpt-4o-mini"


@pytest.mark.anyio
async def test_a_tool_cut_off_by_the_tasks_timeout_ends_its_span(chain_runtime: Runtime, traced: Any) -> None:
    from pyagent import agent
    from pyagent.testing import ScriptedModel, tool_call

    provider, exporter = traced

    async def lookup(q: str) -> str:
        """Look it up (the backend hangs)."""
        await anyio.sleep(30)
        return "never"

    model = ScriptedModel([tool_call("lookup", q="x"), "answer"])
    monitor = OpenTelemetryMonitor(tracer_provider=provider)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="Assist", steps=[
        Task(name="ask", agent=agent("x", name="assistant", model=model, tools=[lookup]), timeout=0.2)]))
    assert not (await orch.run_workflow("Assist")).ok
    names, parent = tree(exporter)
    (tool_span,) = names["execute_tool lookup"]
    assert parent(tool_span) is names["invoke_agent assistant"][0] and not monitor.spans.tools
    assert tool_span.attributes["error.type"] == "cancelled" and tool_span.status.status_code.name == "ERROR"


def _team_event(kind: str, run_id: str, agent: str | None = None, **data: Any) -> Event:
    return Event(kind, workflow="consensus", run_id=run_id, task=agent, status="completed",
                 data={"pattern": "consensus", **data})


@pytest.mark.anyio
async def test_team_rounds_and_turns_as_nested_spans(chain_runtime: Runtime, traced: Any) -> None:
    """Team events reach the monitor as team plugins send them: broadcast from inside a task's agent."""
    provider, exporter = traced

    async def team(x: Any, ctx: Any) -> Any:
        rt = get_runtime()
        rt.broadcast(_team_event("team.started", ctx.run_id, agents=["a", "b"]))
        for rnd in (1, 2):
            async with anyio.create_task_group() as tg:  # turns run concurrently, as consensus does
                for name in ("a", "b"):
                    async def turn(name: str = name, rnd: int = rnd) -> None:
                        await anyio.sleep(0.01)
                        rt.broadcast(_team_event("team.turn", ctx.run_id, name, round=rnd, phase="answer", output="y"))
                    tg.start_soon(turn)
            rt.broadcast(_team_event("team.round", ctx.run_id, round=rnd, agreement=0.5 * rnd))
        rt.broadcast(_team_event("team.completed", ctx.run_id, rounds=2))
        return "y"

    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(Workflow(name="Decide", steps=[Task(name="vote", agent=team)]))
    assert (await orch.run_workflow("Decide")).ok
    names, parent = tree(exporter)
    (task_span,) = names["invoke_agent team"]
    (team_span,) = names["invoke_workflow consensus"]
    assert parent(team_span) is task_span and team_span.attributes["pyagent.pattern"] == "consensus"
    rounds = {s.attributes["pyagent.round"]: s for s in names["round 1"] + names["round 2"]}
    assert all(parent(r) is team_span for r in rounds.values())
    assert rounds[2].attributes["pyagent.agreement"] == 1.0
    assert rounds[1].end_time <= rounds[2].start_time
    turns = names["invoke_agent a"] + names["invoke_agent b"]
    assert len(turns) == 4
    for turn in turns:
        r = rounds[turn.attributes["pyagent.round"]]
        assert parent(turn) is r and r.start_time <= turn.start_time <= turn.end_time <= r.end_time


@pytest.mark.anyio
async def test_a_team_cut_off_by_its_tasks_timeout_still_ends_its_span(chain_runtime: Runtime, traced: Any) -> None:
    """A team pattern cancelled by its task's timeout sends no team.failed: its span ends with the task's."""
    provider, exporter = traced

    async def team(x: Any, ctx: Any) -> Any:
        rt = get_runtime()
        rt.broadcast(_team_event("team.started", ctx.run_id, agents=["a", "b"]))
        rt.broadcast(_team_event("team.turn", ctx.run_id, "a", round=1, phase="answer", output="y"))
        await anyio.sleep(30)  # b never answers
        return "y"

    monitor = OpenTelemetryMonitor(tracer_provider=provider)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="Decide", steps=[
        Task(name="vote", agent=team, timeout=0.2, continue_on_error=True),
        Task(name="after", agent=lambda x: x)]))
    await orch.run_workflow("Decide")
    await orch.run_workflow("Decide")
    names, parent = tree(exporter)
    teams = names["invoke_workflow consensus"]
    assert len(teams) == 2 and not monitor.spans.teams  # ended, and nothing kept for them
    for team_span in teams:
        assert parent(team_span).name == "invoke_agent team"
        assert team_span.attributes["error.type"] == "cancelled" and team_span.status.status_code.name == "ERROR"
    assert all(parent(t).name == "invoke_workflow consensus" for t in names["invoke_agent a"])
    # Nothing of the cut-off team stays current: later tasks and runs have their usual parents.
    afters = [s for s in exporter.get_finished_spans() if s.attributes.get("pyagent.task") == "after"]
    assert len(afters) == 2 and all(parent(s).name == "invoke_workflow Decide" for s in afters)
    assert all(parent(s) is None and s.parent is None for s in names["invoke_workflow Decide"])


@pytest.mark.anyio
async def test_circuit_changes_are_span_events_of_the_run(chain_runtime: Runtime, traced: Any) -> None:
    provider, exporter = traced

    def boom(x: Any) -> Any:
        raise RuntimeError("down")

    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(Workflow(name="Guarded", steps=[Task(name="t", agent=boom)],
                               circuit_breaker={"failure_threshold": 1, "reset_timeout": 600}))
    await orch.run_workflow("Guarded")
    refused = await orch.run_workflow("Guarded")
    names, _ = tree(exporter)
    opened, rejected = sorted(names["invoke_workflow Guarded"], key=lambda s: s.start_time)
    (change,) = opened.events
    assert change.name == "pyagent.circuit_breaker" and change.attributes["pyagent.circuit.to"] == "open"
    assert opened.attributes["error.type"] == "RuntimeError"
    assert rejected.attributes["pyagent.run_id"] == refused.run_id
    assert rejected.attributes["error.type"] == "CircuitOpenError" and rejected.status.status_code.name == "ERROR"


@pytest.mark.anyio
async def test_metrics_through_the_meter_provider(chain_runtime: Runtime) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    monitor = OpenTelemetryMonitor(meter_provider=MeterProvider(metric_readers=[reader]))
    assert monitor.spans is None  # no tracer provider configured: no spans built
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="W", steps=[Task(name="a", agent=lambda x: x), Task(name="b", agent=lambda x: x)]))
    for _ in range(3):
        await orch.run_workflow("W")
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    runs = {tuple(sorted(p.attributes.items())): p.value for p in metrics["pyagent_runs"].data.data_points}
    assert runs == {(("status", "completed"), ("workflow", "W")): 3}
    durations = metrics["pyagent_task_duration"].data.data_points
    assert sorted(p.count for p in durations) == [3, 3] and metrics["pyagent_task_duration"].unit == "s"
    from pyagent.plugin import METRICS

    assert {m.name for m in METRICS} >= {"pyagent_runs", "pyagent_tasks", "pyagent_run_duration"}
    assert set(metrics) <= {m.name for m in METRICS}


def test_nothing_is_exported_unless_configured(chain_runtime: Runtime, monkeypatch: Any) -> None:
    from opentelemetry import metrics, trace

    for var in [v for v in os.environ if v.startswith("OTEL_")]:
        monkeypatch.delenv(var)
    if type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider":
        pytest.skip("another test of this process installed a global tracer provider")
    monitor = OpenTelemetryMonitor()
    assert monitor.spans is None and monitor.metrics is None and monitor.event_kinds == frozenset()
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert "Proxy" in type(metrics.get_meter_provider()).__name__
    assert repr(monitor) == "OpenTelemetryMonitor(tracing=off, metrics=off)"


def test_spans_through_a_real_otlp_http_exporter(chain_runtime: Runtime, receiver: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    monitor = OpenTelemetryMonitor(tracer_provider=provider)
    orch = Orchestrator(monitors=[monitor])
    orch.add_workflow(Workflow(name="Shipped", steps=[Task(name="a", agent=lambda x: x)]))
    anyio.run(orch.run_workflow, "Shipped")
    monitor.close()  # flushes the batch processor
    spans = receiver.wait_for_spans(2)
    assert sorted(s.name for s in spans) == ["invoke_agent agent", "invoke_workflow Shipped"]
    run = next(s for s in spans if s.name == "invoke_workflow Shipped")
    task = next(s for s in spans if s.name == "invoke_agent agent")
    assert task.parent_span_id == run.span_id and task.trace_id == run.trace_id
    provider.shutdown()


def test_otel_environment_variables_configure_the_exporter(receiver: Any, tmp_path: Any) -> None:
    """In a fresh process (global providers are set once per process): OTEL_* alone turns export on."""
    script = textwrap.dedent("""
        import anyio
        from pyagent.orchestrator import Orchestrator, Task, Workflow
        from pyagent.plugins import get_runtime
        from pyagent.testing import PassForward
        from pyagent.monitors import OpenTelemetryMonitor

        get_runtime().register(PassForward.plugin(), "pass-forward")
        monitor = OpenTelemetryMonitor()
        print(repr(monitor), flush=True)
        orch = Orchestrator(monitors=[monitor])
        orch.add_workflow(Workflow(name="FromEnv", steps=[Task(name="a", agent=lambda x: x)]))
        anyio.run(orch.run_workflow, "FromEnv")
        monitor.close()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_METRICS_EXPORTER": "none",
                "OTEL_SERVICE_NAME": "pyagent-test"})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "OpenTelemetryMonitor(tracing=on, metrics=off)" in done.stdout
    spans = receiver.wait_for_spans(2)
    assert "invoke_workflow FromEnv" in {s.name for s in spans}
    assert receiver.paths[0] == "/v1/traces"


def test_a_monitor_made_after_another_closed_still_exports(receiver: Any) -> None:
    """Providers built from OTEL_* are the process's global ones (set once per process): closing
    one monitor must not shut them down under the next one (a rebuilt configuration, a notebook)."""
    script = textwrap.dedent("""
        import anyio
        from pyagent.orchestrator import Orchestrator, Task, Workflow
        from pyagent.plugins import get_runtime
        from pyagent.testing import PassForward
        from pyagent.monitors import OpenTelemetryMonitor

        get_runtime().register(PassForward.plugin(), "pass-forward")
        for name in ("First", "Second"):
            monitor = OpenTelemetryMonitor()
            orch = Orchestrator(monitors=[monitor])
            orch.add_workflow(Workflow(name=name, steps=[Task(name="a", agent=lambda x: x)]))
            anyio.run(orch.run_workflow, name)
            monitor.close()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_METRICS_EXPORTER": "none"})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for_spans(4)
    assert {"invoke_workflow First", "invoke_workflow Second"} <= {s.name for s in spans}


def test_a_missing_exporter_is_a_clear_error(monkeypatch: Any) -> None:
    from pyagent_otel import providers

    from pyagent import ConfigurationError

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    with pytest.raises(ConfigurationError, match="'zipkin_json' exporter, which is not installed"):
        providers._load("traces", "zipkin_json")


def test_by_name_and_by_class(chain_runtime: Runtime) -> None:
    from pyagent.monitors import OpenTelemetryMonitor as ByClass
    from pyagent.monitors import create

    assert ByClass is OpenTelemetryMonitor
    assert isinstance(create("otel"), OpenTelemetryMonitor)


@pytest.mark.anyio
async def test_a_run_that_waits_for_a_person_ends_its_spans_without_an_error(chain_runtime: Runtime, traced: Any) -> None:
    import uuid

    provider, exporter = traced

    async def approve(x: Any, ctx: Any) -> Any:
        return await ctx.interrupt("Ship it?", schema=bool)

    wf = Workflow(name="Ship", steps=[Task(name="Approve", agent=approve)],
                  checkpointing={"storage": f"memory://otel-{uuid.uuid4().hex}"})
    orch = Orchestrator(monitors=[OpenTelemetryMonitor(tracer_provider=provider)])
    orch.add_workflow(wf)
    waiting = await orch.run_workflow("Ship", wait_for_answers=False)
    (question,) = await orch.apending()
    names, _ = tree(exporter)
    (suspended,) = names["invoke_workflow Ship"]  # ended, not left open while the run waits
    assert suspended.attributes["pyagent.run.status"] == "waiting"
    assert suspended.status.status_code.name == "UNSET"
    assert [e.name for e in suspended.events] == ["pyagent.waiting"]
    (asked,) = names["invoke_agent approve"]
    assert asked.attributes["pyagent.task.status"] == "waiting" and asked.status.status_code.name == "UNSET"
    assert asked.events[0].attributes["pyagent.interrupt.id"] == question.id
    done = await orch.resume(waiting.run_id, {question.id: True})
    assert done is not None and done.ok
    names, _ = tree(exporter)
    assert len(names["invoke_workflow Ship"]) == 2 and len(names["invoke_agent approve"]) == 2
