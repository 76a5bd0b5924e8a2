"""Seed §3.5: an optimist and a skeptic debate for three rounds; an analyst gives the verdict.

The debaters are instruction (LLM) agents answered offline by ScriptedModel; the judge is a
function agent that reads the transcript from its context and returns a dict verdict. A
second, one-round debate has a language-model judge whose prose verdict is parsed.
"""

from __future__ import annotations

from pyagent import RunContext, agent
from pyagent.orchestrator import AgentPatterns
from pyagent.testing import ScriptedModel

skeptic_model = ScriptedModel([
    "The market is unproven: no competitor has shipped it.",
    "Falling costs help our rivals as much as us.",
    "A pilot can fail quietly; a full investment cannot.",
])
optimist = agent("You see the opportunities in new technology.", name="optimist", model=ScriptedModel([
    "Early adopters captured most of the value in the last platform shift.",
    "Unproven means uncontested: costs fall every year.",
    "Then start with a pilot and scale what works.",
]))
skeptic = agent("You see the risks in new technology.", name="skeptic", model=skeptic_model)


def weigh(topic: str, ctx: RunContext) -> dict[str, str]:
    """A judge in code: when both sides end on the same proposal, the debate is balanced."""
    pro = [m.content for m in ctx.transcript if m.role == "pro"]
    con = [m.content for m in ctx.transcript if m.role == "con"]
    if "pilot" in pro[-1] and "pilot" in con[-1]:
        return {"winner": "balanced",
                "conclusion": f"Both sides end at a pilot after {ctx.round} rounds: invest in a small pilot."}
    return {"winner": "pro" if len(pro[-1]) > len(con[-1]) else "con", "conclusion": "Decided on the last word."}


analyst = agent(weigh, name="analyst")


def main() -> None:
    result = AgentPatterns.debate(
        pro_agent=optimist,
        con_agent=skeptic,
        judge=analyst,
        topic="Should we invest in this technology?",
        rounds=3
    )
    for message in result.transcript:
        print(f"[{message.role:>6} r{message.round}] {message.agent}: {message.content}")
    print(f"\nverdict: winner={result.verdict.winner}; {result.output}")
    print("\nWhat the skeptic read in round 2:\n" + skeptic_model.prompts[1])

    # A language-model judge answers in prose; the verdict is parsed from it.
    prose_judge = agent("You judge debates.", name="moderator",
                        model=ScriptedModel(["Winner: con\nThe risks were argued with evidence."]))
    quick = AgentPatterns.debate(pro_agent=lambda t: "It is cheap.", con_agent=lambda t: "It is untested.",
                                 judge=prose_judge, topic="Adopt the new database?", rounds=1)
    print(f"\nprose verdict parsed: winner={quick.verdict.winner}, conclusion={quick.output!r}")


if __name__ == "__main__":
    main()
