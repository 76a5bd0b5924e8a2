"""Seed §4: a simple handoff, team routing and a chain handoff, plus agent-requested transfers.

The customer-facing agents are instruction (LLM) agents answered offline by ScriptedModel;
the report chain uses function agents. Every handoff is printed from the audit trail.
"""

from __future__ import annotations

from typing import Any

from pyagent import agent, handoff, hookimpl
from pyagent.plugin import get_runtime
from pyagent.testing import ScriptedModel


def answering(role: str) -> ScriptedModel:
    """A model that answers as ``role``, quoting the first line of what it was asked."""
    return ScriptedModel(lambda prompt: f"[{role}] re: {prompt.splitlines()[0]}")


sales_agent = agent("You handle sales inquiries", name="sales", model=answering("sales"))
support_agent = agent("You handle technical support", name="support", model=answering("support"))
billing_agent = agent("You handle billing, invoices and payments", name="billing",
                      model=answering("billing"))


class PrintHandoffs:
    """A monitor plugin: every handoff is an event."""

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        if event.kind == "handoff":
            print(f"    event: {event.data['from_agent']} -> {event.data['to_agent']} ({event.data['mode']})")


def trail(result: Any) -> None:
    for h in result.handoffs:
        print(f"    record #{h.hop}: {h.from_agent} -> {h.to_agent}: {h.reason}")


def main() -> None:
    get_runtime().register(PrintHandoffs(), "print-handoffs")

    print("4.1 simple handoff")
    result = handoff(
        from_agent=sales_agent,
        to_agent=support_agent,
        context="Customer needs technical help"
    )
    print(f"  {result.agent} answered: {result.output}")
    trail(result)

    print("\n4.2 team routing")
    team = handoff.team([sales_agent, support_agent, billing_agent])
    for query in ("I have a question about my invoice", "The installer crashes with a technical error",
                  "Can I get a sales quote?", "What's the weather tomorrow?"):
        routed = team.route(query)
        s = routed.scores
        flags = ("" if s.confident else " (low confidence)") + (f" (tie: {s.tied})" if s.tie else "")
        ranking = ", ".join(f"{n}={v:.2f}" for n, v in s.ranking)
        print(f"  {query!r} -> {routed.agent}{flags}\n    scores: {ranking}")

    print("\n4.3 chain handoff")
    researcher = agent(lambda task: f"facts for {task!r}", name="researcher")
    analyst = agent(lambda facts: f"analysis of {facts}", name="analyst")
    writer = agent(lambda analysis: f"REPORT: {analysis}", name="writer")
    result = handoff.chain(
        agents=[researcher, analyst, writer],
        task="Create a market report",
        pass_output=True  # Each agent builds on previous
    )
    print(f"  {result.output}")
    independent = handoff.chain(agents=[researcher, analyst, writer], task="Create a market report",
                                pass_output=False)
    print(f"  pass_output=False: {independent.output}")

    print("\nAgents handing off on their own")
    triage = agent(lambda msg: handoff.to("billing", reason="money question") if "refund" in msg
                   else "triage: answered directly", name="triage", description="first contact")
    desk = handoff.team([triage, billing_agent, support_agent], fallback=triage)
    result = desk.route("Where is my refund?")
    print(f"  {result.agent} answered: {result.output}")
    trail(result)

    print("\nA handoff loop ends at the hop limit")
    ping = agent(lambda x: handoff.to("pong", reason="yours"), name="ping")
    pong = agent(lambda x: handoff.to("ping", reason="no, yours"), name="pong")
    loop = handoff.chain(agents=[ping, pong], task="who answers?", max_hops=3)
    print(f"  {loop.status.value}: {loop.error}")


if __name__ == "__main__":
    main()
