"""Seed §3.6: a reasoning agent works through four named steps, each building on the last.

First an instruction (LLM) agent answered offline by ScriptedModel, to show the prompt each
step reads; then a function agent that does real arithmetic from the earlier steps' outputs.
"""

from __future__ import annotations

from typing import Any

from pyagent import RunContext, agent
from pyagent.orchestrator import AgentPatterns
from pyagent.testing import ScriptedModel

model = ScriptedModel([
    "We need x such that 2x + 3 = 11.",
    "Two operations undo the equation: subtract 3, then divide by 2.",
    "11 - 3 = 8; 8 / 2 = 4, so x = 4.",
    "Check: 2 * 4 + 3 = 11. The solution x = 4 is correct.",
])
reasoning_agent = agent("You reason carefully, one step at a time.", name="reasoner", model=model)


def solver(task: str, ctx: RunContext) -> Any:
    """Solves a*x + b = c, one step per call, reading earlier steps from ctx.results."""
    lhs, c = task.split("=")
    a, b = (int(t.strip().rstrip("x")) for t in lhs.split("+"))
    if ctx.step == "Understand the problem":
        return {"a": a, "b": b, "c": int(c)}
    if ctx.step == "Identify key components":
        eq = ctx.results["Understand the problem"]
        return [f"subtract {eq['b']}", f"divide by {eq['a']}"]
    if ctx.step == "Solve step by step":
        eq = ctx.results["Understand the problem"]
        return (eq["c"] - eq["b"]) / eq["a"]
    x = ctx.result  # "Verify the solution": the previous step's output
    return f"x = {x:g} (check: {a}*{x:g} + {b} = {a * x + b:g})"


def main() -> None:
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
    for number, (step, output) in enumerate(result.by_step.items(), start=1):
        print(f"{number}. {step}: {output}")
    print(f"solution: {result.output}")
    print("\nWhat the agent read at step 3:\n" + model.prompts[2])

    worked = AgentPatterns.chain_of_thought(
        agent=agent(solver, name="solver"),
        task="2x + 3 = 11",
        steps=["Understand the problem", "Identify key components", "Solve step by step",
               "Verify the solution"],
    )
    print(f"\nfunction agent: steps={worked.steps}")
    print(f"solution: {worked.output}")


if __name__ == "__main__":
    main()
