"""Seed sections 3.4 (consensus), 3.5 (debate) and 3.6 (chain of thought), as written.

The seed leaves its agents undefined; here they are instruction agents answered by
``ScriptedModel`` (so the prompts an LLM would read are exercised too), and the snippets run
both from plain synchronous code and with ``await`` inside async code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pyagent import agent
from pyagent.orchestrator import AgentPatterns
from pyagent.testing import ScriptedModel

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "orchestration-architecture.md"


def _experts() -> tuple[Any, Any, Any]:
    """Two experts say yes; the third says no until it has read the others' answers."""

    def persuadable(prompt: str) -> str:
        return "Yes." if "Transcript:" in prompt and "(round 1): Yes" in prompt else "No."

    expert1 = agent("You are a cloud architect.", name="architect", model=ScriptedModel(["Yes"], cycle=True))
    expert2 = agent("You are a security lead.", name="security", model=ScriptedModel(["yes."], cycle=True))
    expert3 = agent("You are a finance lead.", name="finance", model=ScriptedModel(persuadable))
    return expert1, expert2, expert3


def _debaters() -> tuple[Any, Any, Any]:
    optimist = agent("You argue for new technology.", name="optimist",
                     model=ScriptedModel(lambda p: f"It pays back (round {p.count('(round') // 2 + 1})."))
    skeptic = agent("You argue against new technology.", name="skeptic",
                    model=ScriptedModel(lambda p: "The risks are not priced in."))
    analyst = agent("You weigh both sides.", name="analyst",
                    model=ScriptedModel(["Winner: balanced\nInvest a small amount and review in a quarter."]))
    return optimist, skeptic, analyst


def _reasoner() -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(["Find x with 2x + 3 = 11.", "Subtract 3, then halve.", "2x = 8, so x = 4.",
                           "2*4 + 3 = 11: x = 4."])
    return agent("You reason step by step.", name="reasoner", model=model), model


# -- 3.4 consensus ----------------------------------------------------------------------------


def test_seed_3_4_consensus_from_sync_code(runtime: Any) -> None:
    expert1, expert2, expert3 = _experts()

    result = AgentPatterns.consensus(
        agents=[expert1, expert2, expert3],
        task="Should we adopt this technology?",
        max_rounds=3,
        agreement_threshold=0.8
    )

    assert result.ok and result.reached
    assert result.rounds == 2 and result.agreement == 1.0
    assert result.output == "Yes"
    assert [m.round for m in result.transcript] == [1, 1, 1, 2, 2, 2]


@pytest.mark.anyio
async def test_seed_3_4_consensus_awaited(runtime: Any) -> None:
    expert1, expert2, expert3 = _experts()

    result = await AgentPatterns.consensus(
        agents=[expert1, expert2, expert3],
        task="Should we adopt this technology?",
        max_rounds=3,
        agreement_threshold=0.8
    )

    assert result.reached and result.answers["finance"] == "Yes."


@pytest.mark.anyio
async def test_seed_3_4_consensus_with_router_similarity(runtime: Any) -> None:
    """The installed default router judges that differently worded answers agree."""
    answers = ["Yes, we should adopt this technology.", "We should adopt the technology",
               "No, we should not adopt this technology"]
    experts = [agent(lambda task, a=a: a, name=f"expert{i}") for i, a in enumerate(answers, 1)]

    by_text = await AgentPatterns.consensus(agents=experts, task="Adopt?", max_rounds=1,
                                            agreement_threshold=0.6)
    by_router = await AgentPatterns.consensus(agents=experts, task="Adopt?", max_rounds=1,
                                              agreement_threshold=0.6, equivalence="router")

    assert not by_text.reached and by_text.agreement == pytest.approx(1 / 3)
    assert by_router.reached and by_router.agreement == pytest.approx(2 / 3)
    assert by_router.supporters == ["expert1", "expert2"]


# -- 3.5 debate -------------------------------------------------------------------------------


def test_seed_3_5_debate_from_sync_code(runtime: Any) -> None:
    optimist, skeptic, analyst = _debaters()

    result = AgentPatterns.debate(
        pro_agent=optimist,
        con_agent=skeptic,
        judge=analyst,
        topic="Should we invest in this technology?",
        rounds=3
    )

    assert result.ok
    assert result.verdict.winner == "balanced"
    assert result.output == "Invest a small amount and review in a quarter."
    assert [(m.agent, m.round) for m in result.transcript] == [
        ("optimist", 1), ("skeptic", 1), ("optimist", 2), ("skeptic", 2), ("optimist", 3),
        ("skeptic", 3), ("analyst", 3)]
    assert result.transcript[2].content == "It pays back (round 2)."  # pro read round 1


@pytest.mark.anyio
async def test_seed_3_5_debate_awaited(runtime: Any) -> None:
    optimist, skeptic, analyst = _debaters()

    result = await AgentPatterns.debate(
        pro_agent=optimist,
        con_agent=skeptic,
        judge=analyst,
        topic="Should we invest in this technology?",
        rounds=3
    )

    assert result.verdict.winner == "balanced" and len(result.transcript) == 7


# -- 3.6 chain of thought -------------------------------------------------------------------


def test_seed_3_6_chain_of_thought_from_sync_code(runtime: Any) -> None:
    reasoning_agent, model = _reasoner()

    result = AgentPatterns.chain_of_thought(
        agent=reasoning_agent,
        task="Solve this complex problem",
        steps=[
            "Understand the problem",
            "Identify key components",
            "Solve step by step",
            "Verify the solution"
        ]
    )

    assert result.ok and result.output == "2*4 + 3 = 11: x = 4."
    assert result.steps[2] == "2x = 8, so x = 4."
    assert "- Solve step by step: 2x = 8, so x = 4." in model.prompts[3]


@pytest.mark.anyio
async def test_seed_3_6_chain_of_thought_awaited(runtime: Any) -> None:
    reasoning_agent, _ = _reasoner()

    result = await AgentPatterns.chain_of_thought(
        agent=reasoning_agent,
        task="Solve this complex problem",
        steps=[
            "Understand the problem",
            "Identify key components",
            "Solve step by step",
            "Verify the solution"
        ]
    )

    assert list(result.by_step) == ["Understand the problem", "Identify key components",
                                    "Solve step by step", "Verify the solution"]


# -- the snippets read from the seed itself -------------------------------------------------


def _seed_snippets() -> dict[str, str]:
    text = SEED.read_text()
    snippets = {}
    for section in ("3.4", "3.5", "3.6"):
        body = text.split(f"### {section} ", 1)[1].split("\n### ", 1)[0]
        snippets[section] = re.findall(r"```python\n(.*?)```", body, re.S)[0]
    return snippets


@pytest.mark.skipif(not SEED.exists(), reason="the seed is not next to this checkout")
def test_seed_snippets_verbatim(runtime: Any) -> None:
    expert1, expert2, expert3 = _experts()
    optimist, skeptic, analyst = _debaters()
    reasoning_agent, _ = _reasoner()
    names = {"AgentPatterns": AgentPatterns, "expert1": expert1, "expert2": expert2,
             "expert3": expert3, "optimist": optimist, "skeptic": skeptic, "analyst": analyst,
             "reasoning_agent": reasoning_agent}
    outcomes = {}
    for section, code in _seed_snippets().items():
        namespace = dict(names)
        exec(compile(code, f"seed §{section}", "exec"), namespace)
        outcomes[section] = namespace["result"]

    assert outcomes["3.4"].reached and outcomes["3.4"].output == "Yes"
    assert outcomes["3.5"].verdict.winner == "balanced"
    assert outcomes["3.6"].output == "2*4 + 3 = 11: x = 4."


@pytest.mark.anyio
async def test_team_patterns_inside_a_workflow_step_share_its_run_id(runtime: Any) -> None:
    # Like a supervisor or a handoff inside a task, a consensus, debate or chain of thought run
    # by a step belongs to that run: its result and events carry the workflow run's id.
    from pyagent import Task, Workflow, hookimpl

    class Recorder:
        def __init__(self) -> None:
            self.events: list[Any] = []

        @hookimpl
        def pyagent_on_event(self, event: Any) -> None:
            self.events.append(event)

    monitor = Recorder()
    runtime.register(monitor, "recorder")
    seen: dict[str, str] = {}
    yes = agent(lambda t: "yes", name="yes")

    async def deliberate(task: str) -> str:
        agreed = await AgentPatterns.consensus(agents=[yes, agent(lambda t: "yes", name="also")], task=task)
        argued = await AgentPatterns.debate(pro_agent=yes, con_agent=lambda t: "no",
                                            judge=lambda t: "Winner: pro. Go.", topic=task, rounds=1)
        thought = await AgentPatterns.chain_of_thought(agent=yes, task=task, steps=["think"])
        seen.update(consensus=agreed.run_id, debate=argued.run_id, chain_of_thought=thought.run_id)
        return f"{agreed.output}/{argued.output}/{thought.output}"

    workflow = Workflow(name="Deliberation", steps=[Task(name="Decide", agent=agent(deliberate, name="decide"))])
    result = await workflow.run("Adopt it?")
    assert result.ok, result.error
    assert seen == dict.fromkeys(("consensus", "debate", "chain_of_thought"), result.run_id)
    team_events = [e for e in monitor.events if e.kind.startswith("team.")]
    assert team_events and {e.run_id for e in team_events} == {result.run_id}
