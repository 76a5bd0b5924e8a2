"""An agent's own guardrails and grants hold wherever it runs: in every team pattern and handoff.

Team patterns call agents outside any workflow task (``call_agent``, ``HandoffSession``, or the
supervisor calling its planner directly); the guardrails travel with the agent, so they apply
there exactly as in a task.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyagent import (
    CapabilityError,
    GuardrailError,
    Task,
    TaskStatus,
    Workflow,
    agent,
    handoff,
    hookimpl,
)
from pyagent.guardrails import deny_regex, max_length, redact_pii
from pyagent.model.events import CAPABILITY_DENIED, GUARDRAIL_BLOCKED, GUARDRAIL_REPLACED
from pyagent.orchestrator import AgentPatterns, Orchestrator
from pyagent.plugins import Runtime
from pyagent.testing import ScriptedModel

CARD = "4111 1111 1111 1111"  # a test card number: passes the Luhn check


class Monitor:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.kind == kind]


@pytest.fixture
def monitor(runtime: Runtime) -> Monitor:
    m = Monitor()
    runtime.register(m, "guardrail-monitor")
    return m


def leaky(name: str, reply: str, **bounds: Any) -> Any:
    return agent(lambda x: reply, name=name, **bounds)


@pytest.mark.anyio
async def test_supervisor_workers_and_the_supervisor_itself_are_checked(monitor: Monitor) -> None:
    planner = agent(lambda x, ctx: ["look up the customer", "draft the reply"] if ctx.phase == "plan"
                    else " / ".join(ctx.results.values()), name="planner")
    clerk = leaky("clerk", f"customer pays with {CARD}", guardrails=[redact_pii()])
    writer = leaky("writer", "Dear customer, ...", guardrails=[max_length(100)])
    result = await AgentPatterns.supervisor(supervisor=planner, workers=[clerk, writer]).run("refund")
    assert result.ok, result.error
    assert result.output == "customer pays with [redacted card] / Dear customer, ..."
    assert CARD not in repr(result.transcript)
    [replaced] = monitor.of(GUARDRAIL_REPLACED)
    assert replaced.data["agent"] == "clerk" and replaced.run_id == result.run_id

    # A worker's block fails its subtask; the blocked output is nowhere.
    blabber = leaky("blabber", "x" * 500, guardrails=[max_length(100)])
    failed = await AgentPatterns.supervisor(supervisor=planner, workers=[blabber]).run("refund")
    assert failed.status is TaskStatus.FAILED
    assert isinstance(failed.exception.error, GuardrailError)
    assert "x" * 500 not in repr(failed.model_dump())

    # The supervisor is called directly by the pattern (not through call_agent): still checked.
    gated = agent(lambda x, ctx: ["rm -rf /"] if ctx.phase == "plan" else "done", name="gated",
                  guardrails=[deny_regex(r"rm -rf")])
    refused = await AgentPatterns.supervisor(supervisor=gated, workers=[writer]).run("clean up")
    assert refused.status is TaskStatus.FAILED
    assert isinstance(refused.exception.__cause__, GuardrailError)
    assert "output guardrail 'deny_regex' blocked the output of agent 'gated'" in refused.error
    # Both subtasks went to blabber; the first block may cancel the second before it answers.
    blocked = [e.data["agent"] for e in monitor.of(GUARDRAIL_BLOCKED)]
    assert set(blocked[:-1]) == {"blabber"} and blocked[-1] == "gated"


def test_consensus_answers_are_redacted_before_anyone_sees_them(monitor: Monitor) -> None:
    a = leaky("a", "mail ops@example.com", guardrails=[redact_pii()])
    b = leaky("b", "mail [redacted email]")
    result = AgentPatterns.consensus(agents=[a, b], task="who to contact?", max_rounds=1)
    assert result.ok and result.reached and result.agreement == 1.0
    assert result.output == "mail [redacted email]"
    assert "ops@example.com" not in repr([m.content for m in result.transcript])


def test_a_debate_judge_that_is_blocked_fails_the_debate(monitor: Monitor) -> None:
    pro = leaky("pro", "yes")
    con = leaky("con", "no")
    judge = leaky("judge", "the winner is pro because the password is swordfish",
                  guardrails=[deny_regex(r"password")])
    result = AgentPatterns.debate(pro_agent=pro, con_agent=con, judge=judge, topic="t", rounds=1)
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.exception, GuardrailError)  # the pattern reports the judge's own error
    assert "swordfish" not in (result.error or "")
    assert monitor.of(GUARDRAIL_BLOCKED)[0].data["agent"] == "judge"


def test_chain_of_thought_checks_every_step(monitor: Monitor) -> None:
    thinker = agent("You reason step by step", name="thinker", guardrails=[redact_pii()],
                    model=ScriptedModel(["call +1 555 123 4567", "so the answer is 42"]))
    result = AgentPatterns.chain_of_thought(agent=thinker, task="q", steps=["recall", "conclude"])
    assert result.ok and result.steps == ["call [redacted phone]", "so the answer is 42"]
    assert len(monitor.of(GUARDRAIL_REPLACED)) == 1


def test_routing_and_chains_check_the_agents_they_run(monitor: Monitor) -> None:
    billing = leaky("billing", f"billing: card {CARD} charged", guardrails=[redact_pii()])
    support = leaky("support", "support answers")
    routed = handoff.team([billing, support], router="keyword").route("billing question about my invoice")
    assert routed.ok and routed.agent == "billing" and routed.output == "billing: card [redacted card] charged"

    strict = leaky("strict", "a much too long answer", guardrails=[max_length(5)])
    calls: list[str] = []
    last = agent(lambda x: calls.append(x) or "done", name="last")
    chained = handoff.chain(agents=[support, strict, last], task="go")
    assert chained.status is TaskStatus.FAILED and chained.agent == "strict" and calls == []
    assert isinstance(chained.exception, GuardrailError)


def test_grants_hold_in_routing_and_chains(monitor: Monitor) -> None:
    billing = leaky("billing", "billing answers")
    support = leaky("support", "support answers")
    triage = agent(lambda x: handoff.to("support", reason="tech"), name="triage",
                   description="triage billing question invoice", can_handoff_to=["billing"])
    routed = handoff.team([triage, billing, support], router="keyword").route("triage this")
    assert routed.status is TaskStatus.FAILED and isinstance(routed.exception, CapabilityError)
    assert [(r.from_agent, r.to_agent, r.denied) for r in routed.handoffs][-1] == ("triage", "support", True)
    chained = handoff.chain(agents=[billing, triage], task="go")
    assert chained.status is TaskStatus.FAILED and isinstance(chained.exception, CapabilityError)
    assert len(monitor.of(CAPABILITY_DENIED)) == 2
    # A chain's own steps and a supervisor's delegations are planned by the code that built the
    # team, which names every member: no grant applies to them.
    bounded = agent(lambda x: "first", name="bounded", can_handoff_to=[])
    assert handoff.chain(agents=[bounded, billing], task="go").ok
    boss = agent(lambda x, ctx: ["bill it"] if ctx.phase == "plan" else "done", name="boss",
                 can_handoff_to=[])
    delegated = anyio.run(AgentPatterns.supervisor(supervisor=boss, workers=[billing]).run, "invoice")
    assert delegated.ok and delegated.assignments == {"bill it": "billing"}


@pytest.mark.anyio
async def test_a_team_inside_a_workflow_task_reports_to_the_run(runtime: Runtime) -> None:
    """The agent's guardrail fires inside a consensus that a task started: it is that run's."""
    import uuid

    store_url = f"memory://{uuid.uuid4().hex}"
    a = leaky("a", "write to ann@example.com", guardrails=[redact_pii()])
    b = leaky("b", "write to [redacted email]")

    async def ask_the_panel(question: str) -> Any:
        return (await AgentPatterns.consensus(agents=[a, b], task=question, max_rounds=1)).output

    orchestrator = Orchestrator(store=store_url)
    wf = orchestrator.add_workflow(Workflow(name="Panel", steps=[Task(name="Ask", agent=ask_the_panel)]))
    events: list[Any] = []
    result = await wf.run("who?", on_event=events.append)
    assert result.ok and result.output == "write to [redacted email]"
    [replaced] = [e for e in events if e.kind == GUARDRAIL_REPLACED]
    assert replaced.run_id == result.run_id and replaced.data["agent"] == "a"
    [record] = await orchestrator.aget_history(workflow="Panel")
    assert [(x.kind, x.data["agent"]) for x in record.audit] == [(GUARDRAIL_REPLACED, "a")]
