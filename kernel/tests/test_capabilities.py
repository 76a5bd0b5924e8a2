"""Least capability: can_handoff_to bounds handoffs, tools= bounds tool calls; denials are audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from pyagent import (
    CapabilityError,
    ConfigurationError,
    Orchestrator,
    RunContext,
    Task,
    TaskStatus,
    Workflow,
    agent,
    handoff,
    hookimpl,
)
from pyagent.cli import main
from pyagent.durability.history import handoff_rows
from pyagent.model.events import CAPABILITY_DENIED, HANDOFF
from pyagent.plugin import check_tool_call, record_denial
from pyagent.plugins import Runtime
from pyagent.testing import ManualClock


class Monitor:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
def monitor(mini_runtime: Runtime) -> Monitor:
    m = Monitor()
    mini_runtime.register(m, "monitor")
    mini_runtime.clock = ManualClock(start=1_000.0)
    return m


def team() -> tuple[Any, Any, Any]:
    calls: list[str] = []
    billing = agent(lambda x: calls.append("billing") or "billing answers", name="billing")
    support = agent(lambda x: calls.append("support") or "support answers", name="support")
    return billing, support, calls


# -- handoffs --------------------------------------------------------------------------------------


def test_grants_are_names_of_agents_or_names() -> None:
    billing, _support, _ = team()
    assert agent(lambda x: x).can_handoff_to is None  # unbounded unless said otherwise
    assert agent(lambda x: x, can_handoff_to=[billing, "support"]).can_handoff_to == {"billing", "support"}
    assert agent(lambda x: x, can_handoff_to=[]).can_handoff_to == frozenset()
    assert agent("You triage", can_handoff_to=billing).can_handoff_to == {"billing"}
    with pytest.raises(ConfigurationError, match="can_handoff_to= must hold agents"):
        agent(lambda x: x, can_handoff_to=[3])


def test_a_transfer_outside_the_grant_is_denied_and_audited(monitor: Monitor) -> None:
    billing, _support, calls = team()
    triage = agent(lambda x: handoff.to("support", reason="needs support"), name="triage",
                   can_handoff_to=[billing])
    result = handoff(from_agent="web-form", to_agent=triage, context="help", max_hops=5)
    assert result.status is TaskStatus.FAILED and calls == []
    assert isinstance(result.exception, CapabilityError)
    assert result.agent == "triage"
    assert result.error == ("agent 'triage' may not hand off to 'support': it is not in the agent's "
                            "can_handoff_to= (allowed: billing); add it there if the handoff is legitimate")
    with pytest.raises(CapabilityError):
        result.raise_for_status()
    # The audit trail keeps the denial next to the handoffs that happened.
    assert [(r.from_agent, r.to_agent, r.mode, r.denied) for r in result.handoffs] == [
        ("web-form", "triage", "handoff", False), ("triage", "support", "transfer", True)]
    denied = result.handoffs[1]
    assert denied.reason == "needs support" and denied.denial == result.error
    assert denied.timestamp == 1_000.0
    assert result.transfers == 0  # a denied transfer is not a hop
    assert monitor.kinds() == [HANDOFF, CAPABILITY_DENIED]
    event = monitor.events[1]
    assert event.run_id == result.run_id
    assert event.data["capability"] == "handoff" and event.data["agent"] == "triage"
    assert event.data["target"] == "support" and event.data["denial"] == result.error


def test_a_transfer_inside_the_grant_goes_ahead(monitor: Monitor) -> None:
    billing, support, calls = team()
    triage = agent(lambda x: handoff.to(billing, reason="invoice"), name="triage",
                   can_handoff_to=[billing, support])
    result = handoff(from_agent="web-form", to_agent=triage, context="invoice")
    assert result.ok and result.agent == "billing" and calls == ["billing"]
    assert not any(r.denied for r in result.handoffs)
    assert CAPABILITY_DENIED not in monitor.kinds()


def test_an_explicit_handoff_from_a_bounded_agent_is_denied(monitor: Monitor) -> None:
    billing, support, calls = team()
    triage = agent(lambda x: x, name="triage", can_handoff_to=["billing"])
    result = handoff(from_agent=triage, to_agent=support, context="printer on fire")
    assert result.status is TaskStatus.FAILED and calls == []
    assert isinstance(result.exception, CapabilityError) and result.exception.target == "support"
    [rec] = result.handoffs
    assert (rec.from_agent, rec.to_agent, rec.mode, rec.denied, rec.reason) == (
        "triage", "support", "handoff", True, "printer on fire")
    assert monitor.kinds() == [CAPABILITY_DENIED]
    allowed = handoff(from_agent=triage, to_agent=billing, context="invoice")
    assert allowed.ok and calls == ["billing"]


def test_an_agent_calling_handoff_itself_is_bounded_by_its_own_grant(monitor: Monitor) -> None:
    billing, support, calls = team()

    # It names someone else as from_agent: the grant of the agent that is running still holds.
    @agent(name="sneaky", can_handoff_to=[billing])
    async def sneaky(request: str) -> Any:
        inner = await handoff(from_agent="someone-else", to_agent=support, context=request)
        return inner.error

    result = handoff(from_agent="user", to_agent=sneaky, context="reset my password")
    assert result.ok and calls == []
    assert result.output.startswith("agent 'sneaky' may not hand off to 'support'")


def test_a_denied_handoff_inside_a_workflow_is_in_its_history(monitor: Monitor, store_url: str) -> None:
    billing, support, calls = team()

    @agent(name="triage", can_handoff_to=[billing])
    async def triage(request: str) -> Any:
        answer = await handoff(from_agent=triage, to_agent=support, context=request)
        return answer.raise_for_status().output  # a denial fails the task

    events: list[Any] = []
    orchestrator = Orchestrator(store=store_url)
    wf = orchestrator.add_workflow(Workflow(name="Desk", steps=[Task(name="Route", agent=triage)]))
    result = anyio.run(lambda: wf.run("printer on fire", on_event=events.append))
    assert result.status is TaskStatus.FAILED and calls == []
    assert isinstance(result.tasks["Route"].error, CapabilityError)
    [denied] = [e for e in events if e.kind == CAPABILITY_DENIED]
    assert denied.run_id == result.run_id and denied.task == "Route"
    assert denied.data["agent"] == "triage" and denied.data["target"] == "support"

    from pyagent.durability.history import query_store

    stored = anyio.run(lambda: query_store(store_url, workflow="Desk", since=None, status=None))
    for record in (orchestrator.get_history(workflow="Desk")[0], stored[0]):
        [h] = record.handoffs
        assert (h.from_agent, h.to_agent, h.reason) == ("triage", "support", "printer on fire")
        assert h.data["denied"] is True and h.data["mode"] == "handoff"
        assert h.data["denial"].startswith("agent 'triage' may not hand off to 'support'")
    [row] = handoff_rows(stored)
    assert row["run_id"] == result.run_id and row["workflow"] == "Desk"
    assert (row["from"], row["to"], row["mode"], row["denied"]) == ("triage", "support", "handoff", True)


def test_a_denial_is_final_for_the_tasks_retry_policy(monitor: Monitor, store_url: str) -> None:
    from pyagent import RetryConfig

    billing, support, calls = team()
    triage = agent(lambda x: handoff.to(support, reason="tech"), name="triage", can_handoff_to=[billing])

    async def desk(request: str) -> Any:
        answer = await handoff(from_agent="web", to_agent=triage, context=request)
        return answer.raise_for_status().output

    orchestrator = Orchestrator(store=store_url)
    wf = orchestrator.add_workflow(Workflow(name="Desk", steps=[
        Task(name="Route", agent=desk, retry_config=RetryConfig(max_retries=2, initial_delay=0))]))
    result = anyio.run(wf.run, "printer on fire")
    assert result.status is TaskStatus.FAILED and calls == []
    assert len(result.tasks["Route"].attempts) == 1  # a denial is not retried: asking again is denied again
    [record] = orchestrator.get_history(workflow="Desk")
    assert [h.data.get("denied", False) for h in record.handoffs] == [False, True]


# -- tools -----------------------------------------------------------------------------------------


class Tooled:
    """An agent as the tool-call loop sees it: a name and its tools= list."""

    def __init__(self, tools: Any) -> None:
        self.name = "clerk"
        self.description = ""
        self.tools = tools

    async def run(self, input: Any, ctx: RunContext) -> Any:
        return input


def lookup_order(order_id: str) -> str:
    return order_id


class RefundTool:
    name = "refund"


def test_check_tool_call_grants_only_the_agents_tools() -> None:
    clerk = Tooled([lookup_order, RefundTool(), "send_email", {"name": "search"}])
    for allowed in ("lookup_order", "refund", "send_email", "search"):
        check_tool_call(clerk, allowed)  # no error
    with pytest.raises(CapabilityError) as denied:
        check_tool_call(clerk, "delete_account")
    err = denied.value
    assert (err.agent, err.capability, err.target) == ("clerk", "tool", "delete_account")
    assert err.granted == ["lookup_order", "refund", "send_email", "search"]
    assert str(err) == ("agent 'clerk' may not call tool 'delete_account': it is not in the agent's "
                        "tools= (allowed: lookup_order, refund, send_email, search); add it to "
                        "tools=[...] if the agent needs it")
    assert err.refusal == ("Refused: you may not call the tool 'delete_account'. Tools you may call: "
                           "lookup_order, refund, send_email, search.")
    # No tools= at all grants no tool.
    with pytest.raises(CapabilityError, match=r"allowed: none"):
        check_tool_call(agent(lambda x: x, name="plain"), "anything")


def test_a_denied_tool_call_outside_a_run_is_broadcast(monitor: Monitor) -> None:
    clerk = Tooled([lookup_order])
    try:
        check_tool_call(clerk, "delete_account")
    except CapabilityError as exc:
        record_denial(exc, ctx=RunContext(run_id="r-7"), call_id="call_1")
    [event] = monitor.events
    assert event.kind == CAPABILITY_DENIED and event.run_id == "r-7" and event.workflow == "clerk"
    assert event.data["capability"] == "tool" and event.data["target"] == "delete_account"
    assert event.data["call_id"] == "call_1" and event.data["denied"] is True
    assert event.data["denial"].startswith("agent 'clerk' may not call tool 'delete_account'")


def test_a_denied_tool_call_in_a_workflow_is_audited_and_exported(monitor: Monitor, tmp_path: Path,
                                                                  store_url: str) -> None:
    """As the tool-call loop of a model agent would: check, record the denial, answer the model."""

    class ModelAgent(Tooled):
        async def run(self, input: Any, ctx: RunContext) -> Any:
            try:
                check_tool_call(self, "delete_account")  # what the model asked for
            except CapabilityError as exc:
                record_denial(exc, ctx=ctx, call_id="call_9")
                return exc.refusal  # what the model is told; the loop goes on
            return "deleted"

    events: list[Any] = []
    wf = Workflow(name="Shop", steps=[Task(name="Serve", agent=ModelAgent([lookup_order]))],
                  checkpointing={"storage": store_url})
    result = anyio.run(lambda: wf.run("close my account", on_event=events.append))
    assert result.ok and result.output.startswith("Refused: you may not call the tool 'delete_account'")
    [denied] = [e for e in events if e.kind == CAPABILITY_DENIED]
    assert denied.task == "Serve" and denied.data["target"] == "delete_account"

    # Handoffs of another run in the same store come out too, oldest first.
    billing, _support, _ = team()
    triage = agent(lambda x: handoff.to(billing, reason="invoice"), name="triage",
                   can_handoff_to=[billing])

    async def route(x: str) -> Any:
        return (await handoff(from_agent="desk", to_agent=triage, context=x)).output

    wf2 = Workflow(name="Desk", steps=[Task(name="Route", agent=route)], checkpointing={"storage": store_url})
    assert anyio.run(lambda: wf2.run("my invoice")).ok

    out = CliRunner().invoke(main, ["history", "--storage", store_url, "--handoffs"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(r["workflow"], r["from"], r["to"], r["mode"], r["denied"]) for r in rows] == [
        ("Shop", "clerk", "delete_account", "tool", True),
        ("Desk", "desk", "triage", "handoff", False),
        ("Desk", "triage", "billing", "transfer", False),
    ]
    tool = rows[0]
    assert tool["run_id"] == result.run_id and tool["denial"].startswith("agent 'clerk' may not call tool")
    assert rows[2]["reason"] == "invoice" and rows[2]["source"] == "handoff"
    assert all(r["time"] and r["timestamp"] for r in rows)
    assert set(rows[0]) == {"run_id", "workflow", "from", "to", "reason", "time", "timestamp", "mode",
                            "denied", "denial", "source"}

    only_desk = json.loads(CliRunner().invoke(
        main, ["history", "--storage", store_url, "--handoffs", "--workflow", "Desk"]).output)
    assert {r["workflow"] for r in only_desk} == {"Desk"} and len(only_desk) == 2
    future = CliRunner().invoke(main, ["history", "--storage", store_url, "--handoffs", "--since", "2999-01-01"])
    assert json.loads(future.output) == []


def test_runs_of_a_workflow_object_are_recorded_in_the_orchestrators_store(monitor: Monitor,
                                                                             store_url: str) -> None:
    """``orchestrator.run_workflow(workflow)`` without ``add_workflow`` is still this orchestrator's run."""
    billing, support, _ = team()
    triage = agent(lambda x: handoff.to(support, reason="tech"), name="triage", can_handoff_to=[billing])

    async def desk(request: str) -> Any:
        return (await handoff(from_agent="web", to_agent=triage, context=request)).raise_for_status().output

    orchestrator = Orchestrator(store=store_url)
    wf = Workflow(name="Walk-in", steps=[Task(name="Route", agent=desk)])
    result = anyio.run(lambda: orchestrator.run_workflow(wf, "printer on fire"))
    assert result.status is TaskStatus.FAILED
    out = CliRunner().invoke(main, ["history", "--storage", store_url, "--handoffs"])
    assert out.exit_code == 0, out.output
    assert [(r["workflow"], r["to"], r["denied"]) for r in json.loads(out.output)] == [
        ("Walk-in", "triage", False), ("Walk-in", "support", True)]


def test_a_denied_tool_call_of_an_agent_a_pattern_calls_names_the_task(monitor: Monitor, store_url: str) -> None:
    """A team pattern calls its agents with contexts of its own (no run, no task): the denial
    still belongs to the task that runs the pattern."""

    class ModelAgent(Tooled):
        async def run(self, input: Any, ctx: RunContext) -> Any:
            try:
                check_tool_call(self, "delete_account")
            except CapabilityError as exc:
                record_denial(exc, ctx=ctx, call_id="call_3")
                return exc.refusal
            return "deleted"

    async def pattern(x: str) -> Any:
        return await ModelAgent([lookup_order]).run(x, RunContext())  # as a team pattern does

    orchestrator = Orchestrator(store=store_url)
    wf = orchestrator.add_workflow(Workflow(name="Team", steps=[Task(name="Deliberate", agent=pattern)]))
    assert anyio.run(wf.run, "close my account").ok
    [record] = orchestrator.get_history(workflow="Team")
    [denial] = [a for a in record.audit if a.kind == CAPABILITY_DENIED]
    assert denial.task == "Deliberate"
    [row] = json.loads(CliRunner().invoke(main, ["history", "--storage", store_url, "--handoffs"]).output)
    assert row["source"] == "Deliberate" and row["to"] == "delete_account"


def test_the_errors_survive_a_process_boundary() -> None:
    import pickle

    from pyagent import GuardrailError

    denied = CapabilityError(agent="clerk", capability="tool", target="rm", granted=["ls"], mode="tool")
    copy = pickle.loads(pickle.dumps(denied))
    assert (str(copy), copy.granted, copy.refusal) == (str(denied), ["ls"], denied.refusal)
    blocked = GuardrailError("too long", guardrail="max_length(5)", side="output", agent="w", task="T",
                             retry=True)
    again = pickle.loads(pickle.dumps(blocked))
    assert (str(again), again.guardrail, again.task, again.retry) == (str(blocked), "max_length(5)", "T", True)
