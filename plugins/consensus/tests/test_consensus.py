"""Consensus behaviour: rounds, revision, agreement, equivalence, failures and events."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pyagent_consensus import ConsensusResult, measure, normalise, same_text

from pyagent import ConfigurationError, PluginNotInstalledError, agent, hookimpl
from pyagent.model.context import RunContext
from pyagent.orchestrator import AgentPatterns, TaskStatus
from pyagent.testing import ScriptedModel


def fixed(name: str, answer: Any) -> Any:
    """An agent that always gives the same answer."""
    return agent(lambda task: answer, name=name)


class Recorder:
    """A monitor plugin that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


# -- rounds and stopping -------------------------------------------------------------------


@pytest.mark.anyio
async def test_agreement_in_round_one_stops_at_once(runtime: Any) -> None:
    agents = [fixed("a", "Yes."), fixed("b", "  yes"), fixed("c", "YES!")]

    result = await AgentPatterns.consensus(agents=agents, task="Adopt?", max_rounds=3,
                                           agreement_threshold=0.8)

    assert isinstance(result, ConsensusResult)
    assert result.ok and result.reached
    assert result.rounds == 1
    assert result.agreement == 1.0
    assert result.output == "Yes."  # the first agent's wording stands for the group
    assert [(m.agent, m.round) for m in result.transcript] == [("a", 1), ("b", 1), ("c", 1)]


@pytest.mark.anyio
async def test_no_agreement_uses_every_round_and_reports_not_reached(runtime: Any) -> None:
    agents = [fixed("a", "yes"), fixed("b", "no"), fixed("c", "maybe")]

    result = await AgentPatterns.consensus(agents=agents, task="Adopt?", max_rounds=2,
                                           agreement_threshold=0.6)

    assert result.ok  # not agreeing is an outcome, not a failure
    assert not result.reached
    assert result.rounds == 2
    assert result.agreement == pytest.approx(1 / 3)
    assert result.agreement_by_round == pytest.approx([1 / 3, 1 / 3])
    assert result.output == "yes"  # a tie goes to the earliest agent
    assert len(result.transcript) == 6
    assert result.answers == {"a": "yes", "b": "no", "c": "maybe"}


@pytest.mark.anyio
async def test_agents_revise_after_seeing_the_previous_round(runtime: Any) -> None:
    seen: dict[int, list[tuple[str, Any, int]]] = {}

    def convinced(task: str, ctx: RunContext) -> str:
        seen[ctx.round] = [(m.agent, m.content, m.round) for m in ctx.transcript]
        if ctx.round == 1:
            assert ctx.phase == "answer"
            return "no"
        assert ctx.phase == "revise"
        others = [m.content for m in ctx.transcript if m.round == ctx.round - 1 and m.agent != "c"]
        return max(set(others), key=others.count)  # go with the others' majority

    agents = [fixed("a", "yes"), fixed("b", "yes"), agent(convinced, name="c")]

    result = await AgentPatterns.consensus(agents=agents, task="Adopt?", max_rounds=3,
                                           agreement_threshold=1.0)

    assert seen[1] == []  # round 1 is independent
    assert seen[2] == [("a", "yes", 1), ("b", "yes", 1), ("c", "no", 1)]
    assert result.reached and result.rounds == 2
    assert result.agreement_by_round == pytest.approx([2 / 3, 1.0])
    assert result.answers["c"] == "yes"
    assert [m.role for m in result.transcript] == ["answer"] * 3 + ["revision"] * 3


@pytest.mark.anyio
async def test_ctx_tells_an_agent_its_own_previous_answer(runtime: Any) -> None:
    previous: list[Any] = []

    def remember(task: str, ctx: RunContext) -> str:
        previous.append(ctx.extra["previous_answer"])
        return f"answer {ctx.round}"

    await AgentPatterns.consensus(agents=[agent(remember, name="r"), fixed("x", "other")],
                                  task="t", max_rounds=3, agreement_threshold=1.0)

    assert previous == [None, "answer 1", "answer 2"]


@pytest.mark.anyio
async def test_round_one_answers_run_concurrently(runtime: Any) -> None:
    # Each agent waits for the other to have started: a sequential round would never finish.
    started = {"a": anyio.Event(), "b": anyio.Event()}

    async def waits_for(other: str, me: str) -> str:
        started[me].set()
        await started[other].wait()
        return "ok"

    agents = [agent(lambda t: waits_for("b", "a"), name="a"),
              agent(lambda t: waits_for("a", "b"), name="b")]
    with anyio.fail_after(5):
        result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                               agreement_threshold=1.0)

    assert result.reached and result.output == "ok"


# -- agreement math and equivalence ---------------------------------------------------------


def test_agreement_is_the_largest_group_over_all_agents() -> None:
    answers = ["A", "b", "a.", "B", "a"]
    agreement = measure(answers, same_text)
    assert agreement.fraction == pytest.approx(3 / 5)
    assert agreement.members == [0, 2, 4]
    assert agreement.representative == 0


def test_default_normalisation_ignores_case_whitespace_and_trailing_punctuation() -> None:
    assert normalise("  We   should\nADOPT it!! ") == "we should adopt it"
    assert same_text("Yes.", "yes") and not same_text("yes", "yes, but")
    assert same_text({"x": 1}, {"x": 1}) and not same_text(1, 2)


@pytest.mark.anyio
@pytest.mark.parametrize(("threshold", "reached"), [(0.8, True), (0.81, False)])
async def test_threshold_is_inclusive(runtime: Any, threshold: float, reached: bool) -> None:
    agents = [fixed(f"e{i}", "yes") for i in range(4)] + [fixed("e4", "no")]  # 4 of 5 = 0.8

    result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                           agreement_threshold=threshold)

    assert result.agreement == pytest.approx(0.8)
    assert result.reached is reached
    assert result.supporters == ["e0", "e1", "e2", "e3"]


@pytest.mark.anyio
async def test_custom_equivalence_function(runtime: Any) -> None:
    def same_verdict(a: str, b: str) -> bool:
        return a.split(":")[0] == b.split(":")[0]

    agents = [fixed("a", "ADOPT: it is fast"), fixed("b", "ADOPT: cheap"), fixed("c", "WAIT: risky")]

    result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                           agreement_threshold=0.6, equivalence=same_verdict)

    assert result.reached and result.agreement == pytest.approx(2 / 3)
    assert result.output == "ADOPT: it is fast"
    assert result.equivalence == "same_verdict"


@pytest.mark.anyio
async def test_equivalence_may_return_a_similarity(runtime: Any) -> None:
    def overlap(a: str, b: str) -> float:
        wa, wb = set(a.split()), set(b.split())
        return len(wa & wb) / len(wa | wb)

    agents = [fixed("a", "adopt it now"), fixed("b", "adopt it later"), fixed("c", "never")]
    loose = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                          agreement_threshold=0.6, equivalence=overlap,
                                          similarity_threshold=0.5)
    strict = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                           agreement_threshold=0.6, equivalence=overlap,
                                           similarity_threshold=0.9)

    assert loose.reached and loose.agreement == pytest.approx(2 / 3)
    assert not strict.reached and strict.agreement == pytest.approx(1 / 3)


@pytest.mark.anyio
async def test_router_similarity_as_equivalence(runtime: Any) -> None:
    class LengthRouter:
        """A toy router: answers of equal length are the same answer."""

        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return [(a.name, 0.0) for a in agents]

        def similarity(self, a: str, b: str) -> float:
            return 1.0 if len(a) == len(b) else 0.0

    class RouterPlugin:
        @hookimpl
        def pyagent_register_routers(self, register: Any) -> None:
            register("length", LengthRouter())

    runtime.register(RouterPlugin(), "length-router")
    agents = [fixed("a", "abc"), fixed("b", "xyz"), fixed("c", "toolong")]

    result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=1,
                                           agreement_threshold=0.6, equivalence="router",
                                           router="length")

    assert result.reached and result.agreement == pytest.approx(2 / 3)
    assert "length" in result.equivalence


def test_router_equivalence_without_a_router_names_the_plugin(bare_runtime: Any) -> None:
    import pyagent_consensus

    bare_runtime.register(pyagent_consensus, "consensus")  # and no router at all
    called: list[str] = []
    agents = [agent(lambda t: called.append("a") or "x", name="a")]
    with pytest.raises(PluginNotInstalledError, match="pip install pyagent-keyword-router"):
        AgentPatterns.consensus(agents=agents, task="t", equivalence="router")
    assert called == []


def test_router_without_similarity_is_a_clear_error(runtime: Any) -> None:
    class ScoreOnly:
        def score(self, query: str, agents: list[Any]) -> list[tuple[str, float]]:
            return []

    class RouterPlugin:
        @hookimpl
        def pyagent_register_routers(self, register: Any) -> None:
            register("scores-only", ScoreOnly())

    runtime.register(RouterPlugin(), "scores-only-router")
    with pytest.raises(ConfigurationError, match="no similarity"):
        AgentPatterns.consensus(agents=[fixed("a", "x")], task="t", equivalence="router",
                                router="scores-only")


# -- instruction (LLM) agents ---------------------------------------------------------------


@pytest.mark.anyio
async def test_llm_agents_see_the_round_and_the_other_answers(runtime: Any) -> None:
    def stubborn_then_convinced(prompt: str) -> str:
        if "Transcript:" not in prompt:
            return "No."
        return "Yes." if "optimist (round 1): Yes" in prompt else "No."

    optimist = agent("You are an optimistic engineer.", name="optimist",
                     model=ScriptedModel(["Yes.", "Yes."]))
    pragmatist = agent("You are a pragmatic engineer.", name="pragmatist",
                       model=ScriptedModel(["Yes", "Yes"]))
    skeptic_model = ScriptedModel(stubborn_then_convinced)
    skeptic = agent("You are a skeptical engineer.", name="skeptic", model=skeptic_model)

    result = await AgentPatterns.consensus(agents=[optimist, pragmatist, skeptic],
                                           task="Should we adopt this technology?",
                                           max_rounds=3, agreement_threshold=1.0)

    assert result.reached and result.rounds == 2 and result.output == "Yes."
    first, second = skeptic_model.prompts
    assert first.startswith("Should we adopt this technology?")
    assert "Transcript:" not in first
    assert "Round 2 of 3" in second and "You are skeptic" in second
    for line in ("- optimist (round 1): Yes.", "- pragmatist (round 1): Yes",
                 "- skeptic (round 1): No."):
        assert line in second
    assert skeptic_model.calls[1][0] == {"role": "system", "content": "You are a skeptical engineer."}


def test_same_agent_twice_gets_numbered_transcript_names(runtime: Any) -> None:
    sampler = agent("Answer yes or no.", name="sampler", model=ScriptedModel(["yes", "yes"]))

    result = AgentPatterns.consensus(agents=[sampler, sampler], task="t", max_rounds=1,
                                     agreement_threshold=1.0)

    assert result.reached
    assert set(result.answers) == {"sampler", "sampler#2"}


# -- failures and bad input -----------------------------------------------------------------


@pytest.mark.anyio
async def test_an_agent_that_raises_fails_the_run_with_the_cause(runtime: Any) -> None:
    def breaks_in_round_two(task: str, ctx: RunContext) -> str:
        if ctx.round == 2:
            raise ValueError("quota exceeded")
        return "no"

    agents = [fixed("a", "yes"), agent(breaks_in_round_two, name="flaky")]

    result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=3,
                                           agreement_threshold=1.0)

    assert result.status is TaskStatus.FAILED and not result.ok
    assert "flaky" in result.error and "round 2" in result.error and "quota exceeded" in result.error
    assert isinstance(result.exception, ValueError)
    assert result.rounds == 1 and not result.reached
    assert len(result.transcript) == 2  # round 1 is kept


def test_llm_agent_without_a_model_fails_with_the_fix(runtime: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PYAGENT_MODEL", raising=False)
    result = AgentPatterns.consensus(agents=[agent("You are an expert.")], task="t")
    assert result.status is TaskStatus.FAILED
    assert "ScriptedModel" in result.error or "pip install" in result.error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"agents": []}, "agents is empty"),
        ({"agents": "expert"}, "list of agents"),
        ({"agreement_threshold": 0}, r"\(0, 1\]"),
        ({"agreement_threshold": 1.5}, r"\(0, 1\]"),
        ({"agreement_threshold": 80}, "percentage"),
        ({"agreement_threshold": "0.8"}, "number"),
        ({"max_rounds": 0}, "max_rounds must be >= 1"),
        ({"max_rounds": 2.5}, "whole number"),
        ({"equivalence": "fuzzy"}, "not known"),
        ({"equivalence": 3}, "equivalence must be"),
        ({"similarity_threshold": 0}, "similarity_threshold"),
    ],
)
def test_bad_options_are_rejected_before_any_agent_runs(runtime: Any, options: dict[str, Any],
                                                        message: str) -> None:
    calls: list[str] = []
    spy = agent(lambda t: calls.append(t) or "x", name="spy")
    kwargs: dict[str, Any] = {"agents": [spy], "task": "t", **options}
    with pytest.raises(ConfigurationError, match=message):
        AgentPatterns.consensus(**kwargs)
    assert calls == []


def test_an_equivalence_that_raises_fails_the_run(runtime: Any) -> None:
    def broken(a: Any, b: Any) -> bool:
        raise KeyError("oops")

    result = AgentPatterns.consensus(agents=[fixed("a", 1), fixed("b", 2)], task="t",
                                     equivalence=broken)

    assert result.status is TaskStatus.FAILED
    assert "equivalence" in result.error and "KeyError" in result.error


# -- events and calling styles --------------------------------------------------------------


@pytest.mark.anyio
async def test_every_turn_and_round_is_an_event(runtime: Any) -> None:
    recorder = Recorder()
    runtime.register(recorder, "recorder")
    agents = [fixed("a", "yes"), agent(lambda t, ctx: "no" if ctx.round == 1 else "yes", name="b")]

    result = await AgentPatterns.consensus(agents=agents, task="t", max_rounds=3,
                                           agreement_threshold=1.0)

    kinds = [e.kind for e in recorder.events]
    assert kinds[0] == "team.started" and kinds[-1] == "team.completed"
    assert kinds.count("team.turn") == 4 and kinds.count("team.round") == 2
    assert all(e.run_id == result.run_id and e.workflow == "consensus" for e in recorder.events)
    turns = [(e.task, e.round, e.output) for e in recorder.events if e.kind == "team.turn"]
    assert sorted(turns) == [("a", 1, "yes"), ("a", 2, "yes"), ("b", 1, "no"), ("b", 2, "yes")]
    rounds = [e.agreement for e in recorder.events if e.kind == "team.round"]
    assert rounds == pytest.approx([0.5, 1.0])


@pytest.mark.anyio
async def test_a_failing_run_emits_team_failed(runtime: Any) -> None:
    recorder = Recorder()
    runtime.register(recorder, "recorder")

    def boom(task: str) -> str:
        raise RuntimeError("down")

    await AgentPatterns.consensus(agents=[agent(boom, name="boom")], task="t")

    failed = [e for e in recorder.events if e.kind == "team.failed"]
    assert len(failed) == 1 and "down" in failed[0].error


def test_sync_call_returns_the_result(runtime: Any) -> None:
    result = AgentPatterns.consensus(agents=[fixed("a", "x"), fixed("b", "x")], task="t")
    assert isinstance(result, ConsensusResult) and result.output == "x"


@pytest.mark.anyio
async def test_team_run_is_a_coroutine_and_reusable(runtime: Any) -> None:
    from pyagent.patterns import build_team

    team = build_team("consensus", agents=[fixed("a", "x")], max_rounds=1, agreement_threshold=1.0)
    first, second = await team.run("one"), await team.run("two")
    assert first.output == second.output == "x"
    assert first.run_id != second.run_id


def test_an_unknown_option_is_named(runtime: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*rounds"):
        AgentPatterns.consensus(agents=[fixed("a", "x")], task="t", rounds=3)


@pytest.mark.anyio
async def test_a_split_decision_is_not_consensus(runtime: Any) -> None:
    # Two say yes, two say no: each half meets a threshold of 0.5, so neither is "agreed".
    agents = [fixed("a", "yes"), fixed("b", "no"), fixed("c", "yes"), fixed("d", "no")]

    result = await AgentPatterns.consensus(agents=agents, task="Adopt?", max_rounds=2,
                                           agreement_threshold=0.5)

    assert result.ok
    assert not result.reached
    assert result.tie
    assert result.rounds == 2  # a tie is no reason to stop: a later round may break it
    assert result.agreement == pytest.approx(0.5)


@pytest.mark.anyio
async def test_a_tie_broken_in_a_later_round_reaches_consensus(runtime: Any) -> None:
    def swing(task: str, ctx: RunContext) -> str:
        return "no" if ctx.round == 1 else "yes"

    agents = [fixed("a", "yes"), agent(swing, name="b"), fixed("c", "yes"), fixed("d", "no")]

    result = await AgentPatterns.consensus(agents=agents, task="Adopt?", max_rounds=3,
                                           agreement_threshold=0.5)

    assert result.reached and not result.tie
    assert result.rounds == 2
    assert result.output == "yes" and result.agreement == pytest.approx(0.75)


def test_a_tie_is_reported_by_measure() -> None:
    assert measure(["yes", "no", "no", "yes"], same_text).tied
    assert not measure(["yes", "no", "yes"], same_text).tied
    assert not measure(["yes", "yes"], same_text).tied


def test_a_threshold_just_above_one_is_not_mistaken_for_a_percentage(runtime: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        AgentPatterns.consensus(agents=[fixed("a", "x")], task="t", agreement_threshold=1.01)
    assert "percentage" not in str(info.value)


def test_times_come_from_the_runtime_clock(runtime: Any) -> None:
    from pyagent.testing import ManualClock

    runtime.clock = ManualClock(start=1000.0)
    result = AgentPatterns.consensus(agents=[fixed("a", "x")], task="t")
    assert (result.started_at, result.finished_at) == (1000.0, 1000.0)


@pytest.mark.anyio
async def test_an_agent_that_does_not_answer_within_the_timeout_fails_the_run(runtime: Any) -> None:
    async def hangs(task: str) -> str:
        await anyio.sleep_forever()
        return task

    agents = [fixed("a", "yes"), agent(hangs, name="stuck")]
    with anyio.fail_after(5):
        result = await AgentPatterns.consensus(agents=agents, task="t", timeout=0.05)
    assert result.status is TaskStatus.FAILED
    assert "agent 'stuck' failed in round 1" in result.error and "timeout=0.05" in result.error
    assert isinstance(result.exception, TimeoutError)


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_timeout_must_be_positive_seconds(runtime: Any, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be None"):
        AgentPatterns.consensus(agents=[fixed("a", "x")], task="t", timeout=bad)


@pytest.mark.anyio
async def test_llm_agents_vote_with_structured_output(runtime: Any) -> None:
    a = agent("You are an architect.", name="architect", model=ScriptedModel(
        [{"answer": "Yes", "reasoning": "It scales."}]))
    b = agent("You are a security lead.", name="security", model=ScriptedModel(
        [{"answer": "yes.", "reasoning": "The audit passed, and it took us three weeks of work."}]))
    result = await AgentPatterns.consensus(agents=[a, b], task="Adopt it?", max_rounds=1,
                                           agreement_threshold=1.0)
    # The short answers are compared, not the whole replies with their different reasons.
    assert result.reached and result.agreement == 1.0 and result.output == "Yes"
    assert result.transcript[1].metadata == {"reasoning": "The audit passed, and it took us three weeks of work."}
    request = a.model.requests[0]
    assert request.output is not None and request.output.name == "Vote"
