"""Chains: ``handoff.chain(agents, task, pass_output=True)`` passes the work along agents in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from pyagent.plugin import (
    Agent,
    HandoffFailure,
    HandoffRecord,
    HandoffResult,
    HandoffSession,
    InstructionAgent,
    as_agents,
    max_hops_setting,
    render_input,
)


class ChainStep(BaseModel):
    """One agent's turn in a chain."""

    agent: str
    input: Any = None
    output: Any = None


class ChainResult(HandoffResult):
    """What ``handoff.chain(...)`` returns: ``.output`` is the last agent's, ``.steps`` every turn."""

    pattern: str = "chain"
    steps: list[ChainStep] = Field(default_factory=list)


class HandoffChain:
    """Agents that pass the work along in order; built by ``handoff.chain(...)``.

    With ``pass_output=True`` each agent's input is the previous agent's output (the first
    gets the task); with ``False`` every agent gets the task. Every agent also finds the task
    in ``ctx.extra["task"]`` and, when outputs are passed on, the earlier agents' outputs in
    ``ctx.results`` (by agent name), so the last of a chain still knows what the chain is for;
    an instruction (LLM) agent reads both in its prompt.
    """

    def __init__(self, agents: Iterable[Any] | None = None, *, pass_output: bool = True,
                 name: str = "chain", max_hops: int | None = None) -> None:
        self.members = as_agents(agents or [], what="chain agent")
        self.pass_output = pass_output
        self.name = name
        self.max_hops = max_hops_setting(max_hops)

    async def run(self, task: Any) -> ChainResult:
        """Run the chain on ``task``; a failing agent ends it with a failed result."""
        members, pass_output, name, hops = self.members, self.pass_output, self.name, self.max_hops
        session = HandoffSession(name=name, max_hops=hops, known=members)
        result = ChainResult()
        previous: Agent | None = None
        value: Any = task
        via: HandoffRecord | None = None
        total = len(members)
        outputs: dict[str, Any] = {}
        for i, member in enumerate(members):
            step_input = value if pass_output else task
            given = step_input
            if pass_output and i and isinstance(member, InstructionAgent):
                given = (f"{render_input(step_input)}\n\n(This is step {i + 1} of {total} of the "
                         f"overall task: {render_input(task)})")
            if previous is not None:
                via = session.record(previous.name, member.name, f"chain step {i + 1} of {total}", "chain")
            try:
                previous, value = await session.run(
                    member, given, result=value if (pass_output and i) else None, via=via,
                    results=outputs if pass_output else None, extra={"task": task})
            except HandoffFailure as failed:
                return session.finish(result, None, None, failed)
            result.steps.append(ChainStep(agent=previous.name, input=step_input, output=value))
            key, n = previous.name, 1
            while key in outputs:
                n += 1
                key = f"{previous.name}#{n}"
            outputs[key] = value
        return session.finish(result, previous, value)


    def __repr__(self) -> str:
        return f"HandoffChain({self.name!r}, agents={[a.name for a in self.members]})"
