"""Seed sections 3.3 (supervisor) and 4 (handoffs), as written, with everything installed.

The seed leaves its agents undefined. The supervisor is an instruction agent answered by
``ScriptedModel`` (so the prompts an LLM would read are exercised), the workers are function
agents. Section 4 builds its agents with ``agent("instructions")`` and no model, so a
throwaway model provider answers them through ``PYAGENT_MODEL``, exactly as a real provider
plugin would. The last tests execute the snippets copied from the seed itself.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyagent import agent, config, handoff, hookimpl
from pyagent.model.events import HANDOFF
from pyagent.orchestrator import AgentPatterns
from pyagent.plugins import Runtime
from pyagent.testing import ScriptedModel

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "orchestration-architecture.md"


def _team_members() -> tuple[Any, Any, Any, Any]:
    manager_agent = agent(
        "You manage a product team: plan the work, then write the report.", name="manager",
        model=ScriptedModel([
            '["Research recent AI trends", "Analyse market numbers and charts", '
            '"Write python code for the demo", "Research competitor papers"]',
            "Feature report: trends, market and demo are covered.",
        ]),
    )
    researcher = agent(lambda s: f"notes on {s.lower()}", name="researcher",
                       description="Researches topics, trends, sources and papers")
    analyst = agent(lambda s: f"numbers for {s.lower()}", name="analyst",
                    description="Analyses market data, numbers and charts")
    developer = agent(lambda s: f"code for {s.lower()}", name="developer",
                      description="Writes python code and demos")
    return manager_agent, researcher, analyst, developer


# -- 3.3 supervisor ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("strategy", "expected"), [
    ("round_robin", ["researcher", "analyst", "developer", "researcher"]),
    ("load_balance", None),  # which worker frees first is up to the scheduler: checked below
    ("expertise_match", ["researcher", "analyst", "developer", "researcher"]),
])
async def test_seed_3_3_supervisor(runtime: Runtime, strategy: str, expected: list[str] | None) -> None:
    manager_agent, researcher, analyst, developer = _team_members()

    team = AgentPatterns.supervisor(
        supervisor=manager_agent,
        workers=[researcher, analyst, developer],
        strategy=strategy  # or "load_balance", "expertise_match"
    )

    result = await team.run("Build a feature report on AI")

    assert result.ok, result.error
    assert result.output == "Feature report: trends, market and demo are covered."
    assert list(result.assignments) == [
        "Research recent AI trends", "Analyse market numbers and charts",
        "Write python code for the demo", "Research competitor papers"]
    if expected is not None:
        assert list(result.assignments.values()) == expected
    else:
        assert set(result.assignments.values()) <= {"researcher", "analyst", "developer"}
        assert list(result.assignments.values())[:3] == ["researcher", "analyst", "developer"]
    plan_prompt, synth_prompt = manager_agent.model.calls[0][-1]["content"], manager_agent.model.calls[1][-1]["content"]
    assert "Build a feature report on AI" in plan_prompt and "developer: Writes python code" in plan_prompt
    assert "code for write python code for the demo" in synth_prompt


# -- 4 handoffs -------------------------------------------------------------------------------


class ScriptedProvider:
    """A model provider plugin whose models say which instructions answered and what they were asked."""

    @hookimpl
    def pyagent_register_models(self, register: Any) -> None:
        register("scripted", lambda model_id: Echo())


class Echo(ScriptedModel):
    def __init__(self) -> None:
        super().__init__(lambda prompt: prompt)

    async def complete(self, messages: list[dict[str, str]]) -> str:
        reply = await super().complete(messages)
        return f"[{messages[0]['content']}] {reply.splitlines()[0]}"


@pytest.fixture
def scripted_models(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    runtime.register(ScriptedProvider(), "scripted-models")
    monkeypatch.setenv("PYAGENT_MODEL", "scripted")
    config.reset()  # settings are read once per process: read PYAGENT_MODEL again
    yield runtime
    config.reset()


class Monitor:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


def test_seed_4_1_simple_handoff(scripted_models: Runtime) -> None:
    monitor = Monitor()
    scripted_models.register(monitor, "monitor")
    from pyagent import agent, handoff

    sales_agent = agent("You handle sales inquiries")
    support_agent = agent("You handle technical support")

    # Explicit handoff
    result = handoff(
        from_agent=sales_agent,
        to_agent=support_agent,
        context="Customer needs technical help"
    )

    assert result.ok and result.agent == support_agent.name
    assert result.output == "[You handle technical support] Customer needs technical help"
    record = result.handoff
    assert (record.from_agent, record.to_agent, record.reason) == (
        sales_agent.name, support_agent.name, "Customer needs technical help")
    assert [e.data["to_agent"] for e in monitor.events if e.kind == HANDOFF] == [support_agent.name]


def test_seed_4_2_team_routing(scripted_models: Runtime) -> None:
    sales_agent = agent("You handle sales inquiries")
    support_agent = agent("You handle technical support")
    billing_agent = agent("You handle billing, invoices and payments", name="billing")

    team = handoff.team([
        sales_agent,
        support_agent,
        billing_agent
    ])

    # Auto-routes based on query
    result = team.route("I have a question about my invoice")
    # → Routes to billing_agent

    assert result.agent == billing_agent.name
    assert result.output == "[You handle billing, invoices and payments] I have a question about my invoice"
    assert result.scores.router == "keyword" and result.scores.confident
    assert result.scores.chosen == "billing" and result.scores["billing"] > 0.5


@pytest.mark.parametrize(("query", "expected"), [
    ("Can I get a refund on my last payment?", "billing"),
    ("The app crashes with a technical error", "support"),
    ("I'd like to discuss a sales inquiry about pricing", "sales"),
])
def test_seed_4_2_team_routes_similar_queries(scripted_models: Runtime, query: str, expected: str) -> None:
    team = handoff.team([
        agent("You handle sales inquiries", name="sales"),
        agent("You handle technical support: errors, crashes and bugs", name="support"),
        agent("You handle billing, invoices and payments, refunds", name="billing"),
    ])
    assert team.route(query).agent == expected


def _chain_agents() -> tuple[Any, Any, Any]:
    researcher = agent(lambda task: f"facts about {task!r}", name="researcher")
    analyst = agent(lambda facts: f"analysis of {facts}", name="analyst")
    writer = agent(lambda analysis: f"report: {analysis}", name="writer")
    return researcher, analyst, writer


def test_seed_4_3_chain_handoff(runtime: Runtime) -> None:
    researcher, analyst, writer = _chain_agents()

    result = handoff.chain(
        agents=[researcher, analyst, writer],
        task="Create a market report",
        pass_output=True  # Each agent builds on previous
    )

    assert result.output == "report: analysis of facts about 'Create a market report'"
    assert [(h.from_agent, h.to_agent) for h in result.handoffs] == [
        ("researcher", "analyst"), ("analyst", "writer")]
    independent = handoff.chain(agents=[researcher, analyst, writer], task="Create a market report",
                                pass_output=False)
    assert independent.output == "report: Create a market report"


@pytest.mark.anyio
async def test_seed_4_handoffs_awaited_inside_a_loop(scripted_models: Runtime) -> None:
    sales_agent = agent("You handle sales inquiries")
    support_agent = agent("You handle technical support")
    billing_agent = agent("You handle billing, invoices and payments", name="billing")
    researcher, analyst, writer = _chain_agents()

    simple = await handoff(from_agent=sales_agent, to_agent=support_agent,
                           context="Customer needs technical help")
    routed = await handoff.team([sales_agent, support_agent, billing_agent]).route(
        "I have a question about my invoice")
    chained = await handoff.chain(agents=[researcher, analyst, writer], task="Create a market report",
                                  pass_output=True)
    assert simple.agent == support_agent.name
    assert routed.agent == "billing"
    assert chained.output.startswith("report: analysis of facts")


# -- the snippets read from the seed itself -------------------------------------------------


def _seed_snippets(section: str) -> list[str]:
    body = SEED.read_text().split(f"### {section} ", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


@pytest.mark.skipif(not SEED.exists(), reason="the seed is not next to this checkout")
@pytest.mark.anyio
async def test_seed_3_3_verbatim(runtime: Runtime) -> None:
    manager_agent, researcher, analyst, developer = _team_members()
    (code,) = _seed_snippets("3.3")
    namespace: dict[str, Any] = {"manager_agent": manager_agent, "researcher": researcher,
                                 "analyst": analyst, "developer": developer}
    compiled = compile(code, "seed §3.3", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    await eval(compiled, namespace)
    result = namespace["result"]
    assert result.ok and result.output.startswith("Feature report")
    assert result.assignments["Research recent AI trends"] == "researcher"


@pytest.mark.skipif(not SEED.exists(), reason="the seed is not next to this checkout")
def test_seed_4_verbatim(scripted_models: Runtime) -> None:
    researcher, analyst, writer = _chain_agents()
    namespace: dict[str, Any] = {
        "billing_agent": agent("You handle billing, invoices and payments", name="billing"),
        "researcher": researcher, "analyst": analyst, "writer": writer,
    }
    outcomes = {}
    for section in ("4.1", "4.2", "4.3"):
        (code,) = _seed_snippets(section)
        exec(compile(code, f"seed §{section}", "exec"), namespace)
        outcomes[section] = namespace["result"]
    assert outcomes["4.1"].agent == namespace["support_agent"].name
    assert outcomes["4.2"].agent == "billing"
    assert outcomes["4.3"].output == "report: analysis of facts about 'Create a market report'"


@pytest.mark.anyio
async def test_supervisor_team_as_a_workflow_step_records_its_delegations(runtime: Runtime) -> None:
    from pyagent import Orchestrator, Task, Workflow

    manager_agent, researcher, analyst, developer = _team_members()
    team = AgentPatterns.supervisor(supervisor=manager_agent, workers=[researcher, analyst, developer],
                                    strategy="expertise_match", name="product-team")
    workflow = Workflow(name="Quarterly report", steps=[
        Task(name="Report", agent=team.as_agent()),
        Task(name="Publish", agent=agent(lambda report: f"published: {report}", name="publisher")),
    ])
    result = await workflow.run("Build a feature report on AI")
    assert result.ok, result.error
    assert result.output == "published: Feature report: trends, market and demo are covered."
    record = Orchestrator().get_history(workflow="Quarterly report")[0]
    assert [(h.from_agent, h.to_agent) for h in record.handoffs] == [
        ("manager", "researcher"), ("manager", "analyst"), ("manager", "developer"),
        ("manager", "researcher")]
