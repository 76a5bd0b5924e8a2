"""Seed §3.4: three experts answer, read each other's answers and revise until they agree.

The experts are instruction (LLM) agents answered offline by ScriptedModel: two say yes at
once, the finance lead says no until the transcript shows it is alone. A second run uses
function agents that never agree, to show a consensus that is not reached.
"""

from __future__ import annotations

import anyio

from pyagent import agent
from pyagent.orchestrator import AgentPatterns
from pyagent.testing import ScriptedModel


def finance_lead(prompt: str) -> str:
    """Says no on its own; says yes once it has read two yes answers in the transcript."""
    if "Transcript:" in prompt and prompt.count("): Yes") >= 2:
        return "Yes."
    return "No."


finance_model = ScriptedModel(finance_lead)
expert1 = agent("You are a cloud architect.", name="architect", model=ScriptedModel(["Yes"], cycle=True))
expert2 = agent("You are a security lead.", name="security", model=ScriptedModel(["Yes."], cycle=True))
expert3 = agent("You are a finance lead.", name="finance", model=finance_model)


def main() -> None:
    result = AgentPatterns.consensus(
        agents=[expert1, expert2, expert3],
        task="Should we adopt this technology?",
        max_rounds=3,
        agreement_threshold=0.8
    )
    print(f"reached={result.reached} after {result.rounds} round(s), "
          f"agreement={result.agreement:.0%}, answer={result.output!r}")
    print("agreement by round:", [f"{a:.0%}" for a in result.agreement_by_round])
    for message in result.transcript:
        print(f"  round {message.round} {message.agent:>9}: {message.content}")
    print("\nWhat the finance lead read in round 2:\n" + finance_model.prompts[1])

    stubborn = [agent(lambda task, a=a: a, name=n) for n, a in
                (("optimist", "adopt now"), ("pragmatist", "pilot first"), ("skeptic", "wait"))]

    async def awaited() -> None:
        # Inside async code the same call is awaited.
        outcome = await AgentPatterns.consensus(agents=stubborn, task="Adopt?", max_rounds=2,
                                                agreement_threshold=0.6)
        print(f"\nstubborn team: reached={outcome.reached}, agreement={outcome.agreement:.0%}, "
              f"rounds={outcome.rounds}, majority answer={outcome.output!r}")

    anyio.run(awaited)


if __name__ == "__main__":
    main()
