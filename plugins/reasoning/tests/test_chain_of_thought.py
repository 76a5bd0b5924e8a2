"""Chain-of-thought behaviour: one call per step, step context, LLM prompts, failures, events."""

from __future__ import annotations

from typing import Any

import pytest
from pyagent_reasoning import ChainOfThoughtResult

from pyagent import ConfigurationError, agent, hookimpl
from pyagent.model.context import RunContext
from pyagent.orchestrator import AgentPatterns, TaskStatus
from pyagent.testing import ScriptedModel

STEPS = ["Understand the problem", "Identify key components", "Solve step by step",
         "Verify the solution"]


class Recorder:
    """A monitor plugin that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.mark.anyio
async def test_each_step_sees_the_task_the_step_and_earlier_outputs(runtime: Any) -> None:
    seen: list[tuple[Any, ...]] = []

    def reason(task: str, ctx: RunContext) -> str:
        seen.append((task, ctx.step, ctx.round, dict(ctx.results), ctx.result,
                     ctx.extra["step_number"], ctx.extra["total_steps"]))
        return f"{ctx.step} done"

    result = await AgentPatterns.chain_of_thought(agent=agent(reason, name="reasoner"),
                                                  task="What is 17 * 23?", steps=STEPS)

    assert [s[0] for s in seen] == ["What is 17 * 23?"] * 4
    assert [s[1] for s in seen] == STEPS
    assert [s[2] for s in seen] == [1, 2, 3, 4]
    assert seen[0][3] == {} and seen[0][4] is None
    assert seen[2][3] == {"Understand the problem": "Understand the problem done",
                          "Identify key components": "Identify key components done"}
    assert seen[2][4] == "Identify key components done"
    assert [(s[5], s[6]) for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert isinstance(result, ChainOfThoughtResult) and result.ok
    assert result.steps == [f"{s} done" for s in STEPS]
    assert result.by_step["Solve step by step"] == "Solve step by step done"
    assert result.output == "Verify the solution done"
    assert result.step_names == STEPS
    assert [(m.agent, m.round, m.metadata["step"]) for m in result.transcript] == [
        ("reasoner", i, s) for i, s in enumerate(STEPS, start=1)
    ]


def test_a_worked_example_builds_on_earlier_steps(runtime: Any) -> None:
    def arithmetic(task: str, ctx: RunContext) -> Any:
        a, b = (int(x) for x in task.split("*"))
        if ctx.step == "split":
            return [a * 10, a * (b - 10)]
        if ctx.step == "add":
            return sum(ctx.results["split"])
        return ctx.result == a * b  # check

    result = AgentPatterns.chain_of_thought(agent=arithmetic, task="17*23",
                                            steps=["split", "add", "check"])

    assert result.steps == [[170, 221], 391, True]
    assert result.output is True


@pytest.mark.anyio
async def test_llm_agent_reads_task_step_and_earlier_outputs_in_its_prompt(runtime: Any) -> None:
    model = ScriptedModel(["We must multiply 17 by 23.", "17*20 and 17*3.", "340 + 51 = 391.",
                           "391 / 23 = 17, so 391 is right."])
    reasoner = agent("You reason carefully, one step at a time.", name="reasoner", model=model)

    result = await AgentPatterns.chain_of_thought(agent=reasoner, task="What is 17 * 23?",
                                                  steps=STEPS)

    assert result.output == "391 / 23 = 17, so 391 is right."
    first, second, third, last = model.prompts
    assert first.startswith("Task: What is 17 * 23?")
    assert "Reasoning step 1 of 4" in first and "Current step: Understand the problem" in first
    assert "Results so far" not in first
    assert "Current step: Identify key components" in second
    assert "- Understand the problem: We must multiply 17 by 23." in second
    assert "- Identify key components: 17*20 and 17*3." in third
    assert "last step" in last and "last step" not in third
    assert "- Solve step by step: 340 + 51 = 391." in last
    assert model.calls[0][0]["content"] == "You reason carefully, one step at a time."


@pytest.mark.anyio
async def test_a_failing_step_fails_the_run_and_keeps_earlier_outputs(runtime: Any) -> None:
    calls: list[str] = []

    def reason(task: str, ctx: RunContext) -> str:
        calls.append(str(ctx.step))
        if ctx.step == "Solve step by step":
            raise ArithmeticError("overflow")
        return "ok"

    result = await AgentPatterns.chain_of_thought(agent=agent(reason, name="reasoner"), task="t",
                                                  steps=STEPS)

    assert result.status is TaskStatus.FAILED
    assert "step 3 of 4 ('Solve step by step')" in result.error and "overflow" in result.error
    assert "reasoner" in result.error
    assert isinstance(result.exception, ArithmeticError)
    assert result.steps == ["ok", "ok"] and result.output is None
    assert calls == STEPS[:3]  # the last step never ran


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "steps is empty"),
        ("Understand the problem", "list of step descriptions"),
        (None, "list of step descriptions"),
        (["Understand", ""], r"steps\[1\] must be a non-empty"),
        (["Understand", 3], r"steps\[1\] must be a non-empty"),
        (["Check", "Check"], "appears twice"),
    ],
)
def test_bad_steps_are_rejected_before_the_agent_runs(runtime: Any, steps: Any, message: str) -> None:
    calls: list[str] = []
    spy = agent(lambda t: calls.append(t) or "x", name="spy")
    with pytest.raises(ConfigurationError, match=message):
        AgentPatterns.chain_of_thought(agent=spy, task="t", steps=steps)
    assert calls == []


def test_a_missing_agent_and_unknown_options_are_clear_errors(runtime: Any) -> None:
    with pytest.raises(ConfigurationError, match="agent must be an agent"):
        AgentPatterns.chain_of_thought(agent=None, task="t", steps=["a"])
    with pytest.raises(ConfigurationError, match=r"unknown option.*rounds"):
        AgentPatterns.chain_of_thought(agent=lambda t: t, task="t", steps=["a"], rounds=2)


@pytest.mark.anyio
async def test_every_step_is_an_event(runtime: Any) -> None:
    recorder = Recorder()
    runtime.register(recorder, "recorder")

    result = await AgentPatterns.chain_of_thought(agent=agent(lambda t: "x", name="r"), task="t",
                                                  steps=["a", "b"])

    kinds = [e.kind for e in recorder.events]
    assert kinds == ["team.started", "team.turn", "team.turn", "team.completed"]
    assert [(e.task, e.step, e.round) for e in recorder.events if e.kind == "team.turn"] == [
        ("r", "a", 1), ("r", "b", 2)]
    assert all(e.run_id == result.run_id and e.workflow == "chain_of_thought" for e in recorder.events)


@pytest.mark.anyio
async def test_async_agent_and_reuse_of_a_team(runtime: Any) -> None:
    from pyagent.patterns import build_team

    async def reason(task: str, ctx: RunContext) -> str:
        return f"{task}:{ctx.step}"

    team = build_team("chain_of_thought", agent=reason, steps=["a", "b"])
    first, second = await team.run("x"), await team.run("y")

    assert first.steps == ["x:a", "x:b"] and second.steps == ["y:a", "y:b"]
    assert first.run_id != second.run_id


def test_times_come_from_the_runtime_clock(runtime: Any) -> None:
    from pyagent.testing import ManualClock

    runtime.clock = ManualClock(start=1000.0)
    result = AgentPatterns.chain_of_thought(agent=lambda t: "ok", task="t", steps=["one"])
    assert result.ok and (result.started_at, result.finished_at) == (1000.0, 1000.0)


@pytest.mark.anyio
async def test_a_step_that_does_not_answer_within_the_timeout_fails_the_run(runtime: Any) -> None:
    import anyio

    async def second_step_hangs(task: str, ctx: RunContext) -> str:
        if ctx.round == 2:
            await anyio.sleep_forever()
        return f"step {ctx.round}"

    with anyio.fail_after(5):
        result = await AgentPatterns.chain_of_thought(agent=agent(second_step_hangs, name="thinker"),
                                                      task="t", steps=["one", "two", "three"],
                                                      timeout=0.05)
    assert result.status is TaskStatus.FAILED
    assert "step 2 of 3" in result.error and "timeout=0.05" in result.error
    assert result.steps == ["step 1"]
    assert isinstance(result.exception, TimeoutError)


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_timeout_must_be_positive_seconds(runtime: Any, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be None"):
        AgentPatterns.chain_of_thought(agent=lambda t: "x", task="t", steps=["one"], timeout=bad)


@pytest.mark.anyio
async def test_llm_prompt_shows_the_plan_and_mentions_earlier_outputs_only_when_there_are_some(
        runtime: Any) -> None:
    model = ScriptedModel(["a", "b", "c", "d"])
    reasoner = agent("You reason carefully.", name="reasoner", model=model)
    await AgentPatterns.chain_of_thought(agent=reasoner, task="What is 17 * 23?", steps=STEPS)
    first, second = model.prompts[:2]
    assert "earlier steps" not in first  # step 1 has nothing earlier to build on
    assert "earlier steps' outputs below" in second
    # The whole plan, so the model does the current step and leaves the later ones for later.
    plan = "1. Understand the problem; 2. Identify key components; 3. Solve step by step; 4. Verify the solution"
    assert plan in first and plan in second
