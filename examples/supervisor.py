"""Seed §3.3: a supervisor plans subtasks, workers execute them, the supervisor synthesizes.

The manager is an instruction (LLM) agent answered offline by ScriptedModel; the workers are
function agents. The same team runs with each strategy, so the assignments can be compared.
"""

from __future__ import annotations

import anyio

from pyagent import agent
from pyagent.orchestrator import AgentPatterns
from pyagent.testing import ScriptedModel

PLAN = """Here is the plan:
1. Research recent AI trends
2. Analyse market numbers and adoption charts
3. Write python code for the demo
4. Research competitor papers
5. Analyse pricing numbers"""


def make_manager() -> object:
    def reply(prompt: str) -> str:
        if "Phase: plan" in prompt:
            return PLAN
        done = prompt.count("\n- ")
        return f"Feature report on AI, built from {done} worker results."

    return agent("You manage a product team: plan the work, then write the report.",
                 name="manager", model=ScriptedModel(reply))


async def research(subtask: str) -> str:
    await anyio.sleep(0.01)
    return f"sources for '{subtask}'"


async def analyse(subtask: str) -> str:
    await anyio.sleep(0.03)  # the slowest worker
    return f"figures for '{subtask}'"


async def develop(subtask: str) -> str:
    await anyio.sleep(0.02)
    return f"code for '{subtask}'"


researcher = agent(research, name="researcher", description="Researches topics, trends and papers")
analyst = agent(analyse, name="analyst", description="Analyses market numbers, pricing and charts")
developer = agent(develop, name="developer", description="Writes python code and demos")


async def main() -> None:
    for strategy in ("round_robin", "load_balance", "expertise_match"):
        manager_agent = make_manager()

        team = AgentPatterns.supervisor(
            supervisor=manager_agent,
            workers=[researcher, analyst, developer],
            strategy=strategy,
        )
        result = await team.run("Build a feature report on AI")

        print(f"== {strategy}: {result.status.value} in {result.rounds} round(s)")
        for subtask, worker in result.assignments.items():
            score = next(w.score for w in result.work if w.subtask == subtask)
            why = f"  (router score {score:.2f})" if score is not None else ""
            print(f"  {worker:>10} <- {subtask}{why}")
        print(f"  output: {result.output}\n")

    # A plan that is not a list of subtasks gives a failed result with the cause, not a hang.
    broken = AgentPatterns.supervisor(supervisor=lambda task: 42, workers=[researcher])
    failed = await broken.run("anything")
    print(f"bad plan -> {failed.status.value}: {failed.error}")


if __name__ == "__main__":
    anyio.run(main)
