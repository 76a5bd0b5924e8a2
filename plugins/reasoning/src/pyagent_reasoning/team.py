"""Chain of thought: one agent works through named reasoning steps, each building on the last."""

from __future__ import annotations

import uuid
from typing import Any

from pyagent.plugin import (
    Agent,
    ConfigurationError,
    InstructionAgent,
    Message,
    PyAgentError,
    RunContext,
    TaskStatus,
    as_agent,
    call_agent,
    check_timeout,
    current_run,
    get_runtime,
    render_input,
)
from pyagent.plugin import events as ev

from .events import emit
from .result import ChainOfThoughtResult


class StepFailedError(PyAgentError):
    """The agent raised during one step; the run fails naming the step."""

    def __init__(self, number: int, total: int, step: str, agent: str, error: BaseException) -> None:
        self.number = number
        self.step = step
        self.agent = agent
        self.error = error
        super().__init__(f"step {number} of {total} ({step!r}) failed: agent '{agent}' raised "
                         f"{type(error).__name__}: {error}")


class ChainOfThoughtTeam:
    """One agent and its reasoning steps. ``await team.run(task)`` returns a result.

    Step *n* is one call of the agent with the task as input and, in ``ctx``, the step
    (``ctx.step``), its number (``ctx.round``, from 1), the earlier steps' outputs by step
    name (``ctx.results``) and the previous output (``ctx.result``). An instruction agent
    reads the same in its prompt.
    """

    def __init__(self, agent: Agent, steps: list[str], timeout: float | None = None) -> None:
        self.timeout = timeout
        self.agent = agent
        self.steps = steps

    def __repr__(self) -> str:
        return f"ChainOfThoughtTeam(agent={self.agent.name!r}, steps={self.steps!r})"

    def _prompt(self, task: Any, number: int) -> str:
        """The input of an instruction agent; ``render_prompt`` adds the step and earlier outputs."""
        total = len(self.steps)
        plan = "; ".join(f"{i}. {step}" for i, step in enumerate(self.steps, start=1))
        earlier = ", building on the earlier steps' outputs below" if number > 1 else ""
        last = " This is the last step: give the final solution." if number == total else ""
        return (
            f"Task: {render_input(task)}\n\n"
            f"The reasoning steps: {plan}.\n"
            f"Reasoning step {number} of {total}. Do only the current step{earlier}.{last}"
        )

    async def run(self, task: Any) -> ChainOfThoughtResult:
        """Run the steps in order; a failure ends the run with the outputs so far."""
        enclosing = current_run()  # inside a workflow step, the team run is part of that run
        run_id = enclosing.run_id if enclosing is not None else uuid.uuid4().hex
        name = self.agent.name
        total = len(self.steps)
        clock = get_runtime().clock
        result = ChainOfThoughtResult(run_id=run_id, task=task, step_names=list(self.steps),
                                      started_at=clock.time())
        emit(ev.TEAM_STARTED, run_id, status="running", input=task, agents=[name],
             steps=list(self.steps))
        outputs: dict[str, Any] = {}
        for number, step in enumerate(self.steps, start=1):
            ctx = RunContext(
                results=dict(outputs), result=result.steps[-1] if result.steps else None,
                step=step, round=number, run_id=run_id,
                extra={"task": task, "steps": list(self.steps), "step_number": number,
                       "total_steps": total},
            )
            prompt = self._prompt(task, number) if isinstance(self.agent, InstructionAgent) else task
            try:
                output = await call_agent(self.agent, prompt, ctx, timeout=self.timeout)
            except Exception as exc:
                error = StepFailedError(number, total, step, name, exc)
                result.status = TaskStatus.FAILED
                result.error = str(error)
                result.exception = exc
                result.finished_at = clock.time()
                emit(ev.TEAM_FAILED, run_id, agent=name, status="failed", error=result.error,
                     step=step, round=number)
                return result
            outputs[step] = output
            result.steps.append(output)
            result.by_step[step] = output
            result.transcript.append(Message(name, output, number, role="step", metadata={"step": step}))
            emit(ev.TEAM_TURN, run_id, agent=name, status="completed", round=number, step=step,
                 output=output)
        result.output = result.steps[-1]
        result.finished_at = clock.time()
        emit(ev.TEAM_COMPLETED, run_id, status="completed", output=result.output, steps=total)
        return result


def _check_steps(steps: Any) -> list[str]:
    example = "e.g. steps=['Understand the problem', 'Solve step by step', 'Verify the solution']"
    if steps is None or isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise ConfigurationError(f"steps must be a list of step descriptions, got {type(steps).__name__}: {example}")
    items = list(steps)
    if not items:
        raise ConfigurationError(f"steps is empty: chain of thought needs at least one step, {example}")
    for i, step in enumerate(items):
        if not isinstance(step, str) or not step.strip():
            raise ConfigurationError(f"steps[{i}] must be a non-empty description of the step, got {step!r}")
    seen: set[str] = set()
    for step in items:
        if step in seen:
            raise ConfigurationError(
                f"step {step!r} appears twice: outputs are kept by step name, so give each step a "
                "distinct description (e.g. 'Verify the solution' and 'Verify the units')"
            )
        seen.add(step)
    return items


def build(*, agent: Any, steps: Any, timeout: Any = None) -> ChainOfThoughtTeam:
    """Validate the options and build a team; every mistake is reported before the agent runs."""
    return ChainOfThoughtTeam(as_agent(agent, what="agent"), _check_steps(steps), check_timeout(timeout))
