"""Debate behaviour: turn order, what each side sees, the judge, verdict parsing, failures."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from pyagent_debate import DebateResult, Verdict, parse_verdict

from pyagent import ConfigurationError, agent, hookimpl
from pyagent.model.context import RunContext
from pyagent.orchestrator import AgentPatterns, TaskStatus
from pyagent.testing import ScriptedModel


class Recorder:
    """A monitor plugin that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def pyagent_on_event(self, event: Any) -> None:
        self.events.append(event)


def debater(side: str, log: list[tuple[str, int, str, list[tuple[str, int, str]]]]) -> Any:
    """A function debater that logs what it saw and argues its side."""

    def argue(topic: str, ctx: RunContext) -> str:
        seen = [(m.agent, m.round, m.role) for m in ctx.transcript]
        log.append((side, ctx.round, str(ctx.phase), seen))
        return f"{side} argument {ctx.round}"

    return agent(argue, name=f"{side}-agent")


# -- turn order and transcript --------------------------------------------------------------


@pytest.mark.anyio
async def test_pro_then_con_each_round_then_the_judge(runtime: Any) -> None:
    log: list[Any] = []
    judged: list[Any] = []

    def judge(topic: str, ctx: RunContext) -> dict[str, str]:
        judged.append((topic, ctx.phase, ctx.round, [(m.agent, m.round) for m in ctx.transcript]))
        return {"winner": "con", "conclusion": "The risks outweigh the benefits."}

    result = await AgentPatterns.debate(pro_agent=debater("pro", log), con_agent=debater("con", log),
                                        judge=agent(judge, name="judge"), topic="Invest?", rounds=3)

    assert [(side, rnd, phase) for side, rnd, phase, _ in log] == [
        ("pro", 1, "pro"), ("con", 1, "con"), ("pro", 2, "pro"), ("con", 2, "con"),
        ("pro", 3, "pro"), ("con", 3, "con"),
    ]
    # Each speaker sees exactly what was said before it.
    assert log[0][3] == []
    assert log[1][3] == [("pro-agent", 1, "pro")]
    assert log[2][3] == [("pro-agent", 1, "pro"), ("con-agent", 1, "con")]
    assert len(log[5][3]) == 5
    topic, phase, rnd, seen = judged[0]
    assert (topic, phase, rnd) == ("Invest?", "judge", 3)
    assert len(seen) == 6
    assert isinstance(result, DebateResult) and result.ok
    assert result.verdict == Verdict(winner="con", conclusion="The risks outweigh the benefits.",
                                     raw={"winner": "con", "conclusion": "The risks outweigh the benefits."})
    assert result.winner == "con"
    assert result.output == "The risks outweigh the benefits."
    assert [(m.agent, m.role) for m in result.transcript][-1] == ("judge", "judge")
    assert [m.content for m in result.transcript[:2]] == ["pro argument 1", "con argument 1"]
    assert result.arguments == {"pro": ["pro argument 1", "pro argument 2", "pro argument 3"],
                                "con": ["con argument 1", "con argument 2", "con argument 3"]}
    assert result.rounds == 3


@pytest.mark.anyio
async def test_ctx_extra_names_the_sides(runtime: Any) -> None:
    seen: list[dict[str, Any]] = []

    def pro(topic: str, ctx: RunContext) -> str:
        seen.append(dict(ctx.extra))
        return "yes"

    await AgentPatterns.debate(pro_agent=agent(pro, name="optimist"), con_agent=lambda t: "no",
                               judge=lambda t: "Winner: balanced", topic="T", rounds=1)

    assert seen[0]["topic"] == "T" and seen[0]["rounds"] == 1 and seen[0]["role"] == "pro"
    assert seen[0]["pro"] == "optimist" and seen[0]["con"] == "agent (con)"


def test_one_round_from_sync_code(runtime: Any) -> None:
    result = AgentPatterns.debate(pro_agent=lambda t: "for", con_agent=lambda t: "against",
                                  judge=lambda t: "Winner: pro\nGood points.", topic="T", rounds=1)
    assert result.verdict.winner == "pro" and result.output == "Good points."
    # Three unnamed lambdas share the name "agent": the transcript tells them apart by role.
    assert [m.agent for m in result.transcript] == ["agent (pro)", "agent (con)", "agent (judge)"]


# -- instruction (LLM) agents ---------------------------------------------------------------


@pytest.mark.anyio
async def test_llm_debaters_and_judge_see_topic_side_round_and_transcript(runtime: Any) -> None:
    pro_model = ScriptedModel(["Growth will pay back.", "Costs fall every year."])
    con_model = ScriptedModel(["The market is unproven.", "Falling costs help rivals too."])
    judge_model = ScriptedModel(['{"winner": "pro", "conclusion": "Invest, in stages."}'])
    optimist = agent("You see opportunities.", name="optimist", model=pro_model)
    skeptic = agent("You see risks.", name="skeptic", model=con_model)
    analyst = agent("You weigh arguments fairly.", name="analyst", model=judge_model)

    result = await AgentPatterns.debate(pro_agent=optimist, con_agent=skeptic, judge=analyst,
                                        topic="Should we invest in this technology?", rounds=2)

    assert result.verdict.winner == "pro" and result.output == "Invest, in stages."
    opening, rebuttal = pro_model.prompts
    assert "Debate topic: Should we invest in this technology?" in opening
    assert "Round 1 of 2" in opening and "argue FOR (pro)" in opening
    assert "Open the debate" in opening and "Transcript:" not in opening
    assert "Round 2 of 2" in rebuttal
    assert "- optimist (round 1): Growth will pay back." in rebuttal
    assert "- skeptic (round 1): The market is unproven." in rebuttal
    con_first = con_model.prompts[0]
    assert "argue AGAINST (con)" in con_first and "- optimist (round 1): Growth will pay back." in con_first
    (judge_prompt,) = judge_model.prompts
    assert "You are the judge" in judge_prompt and "Winner: pro" in judge_prompt
    assert "- skeptic (round 2): Falling costs help rivals too." in judge_prompt
    assert judge_model.calls[0][0]["content"] == "You weigh arguments fairly."


# -- verdict parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "winner", "conclusion"),
    [
        ("Winner: pro. The upside is larger.", "pro", "The upside is larger."),
        ("**Winner:** con\n\nToo risky for now.", "con", "Too risky for now."),
        ("Verdict - the con side.", "con", "Verdict - the con side."),
        ("The winner is the optimist: growth matters more.", "pro",
         "The winner is the optimist: growth matters more."),
        ("After weighing both, the skeptic wins on evidence.", "con",
         "After weighing both, the skeptic wins on evidence."),
        ("I rule in favour of the pro side.", "pro", "I rule in favour of the pro side."),
        ("It is a tie: both made strong points.", "balanced", "It is a tie: both made strong points."),
        ("Winner: balanced", "balanced", "Winner: balanced"),
        ("The con arguments were more convincing.", "con", "The con arguments were more convincing."),
        ("Both sides have merit; adopt cautiously.", "balanced",
         "Both sides have merit; adopt cautiously."),
        ("The verdict for this debate: the pros and cons even out.", "balanced",
         "The verdict for this debate: the pros and cons even out."),
        ('```json\n{"winner": "against", "reasoning": "Too early."}\n```', "con", "Too early."),
        ({"verdict": "PRO", "summary": "Go ahead."}, "pro", "Go ahead."),
        ({"winner": "skeptic"}, "con", "skeptic"),
        ({"conclusion": "The optimist wins narrowly."}, "pro", "The optimist wins narrowly."),
        # What a model writes when asked to start with "Winner: ..." and then conclude.
        ("Winner: con\n\nConclusion: too risky for now.", "con", "too risky for now."),
        ("**Winner:** Pro (optimist)\n\n**Reasoning:** the upside is larger.", "pro",
         "the upside is larger."),
        ("Winner: against\n\nToo early.", "con", "Too early."),
        ("Decision: for. The upside is larger.", "pro", "The upside is larger."),
        ("There is no winner: pro and con were evenly matched.", "balanced",
         "There is no winner: pro and con were evenly matched."),
        ("No clear winner: the pro side had data, the con side had precedent.", "balanced",
         "No clear winner: the pro side had data, the con side had precedent."),
        ('Here is my verdict:\n```json\n{"winner": "con", "conclusion": "Wait a year."}\n```',
         "con", "Wait a year."),
    ],
)
def test_parse_verdict(output: Any, winner: str, conclusion: str) -> None:
    verdict = parse_verdict(output, pro_names=["optimist"], con_names=["skeptic"])
    assert verdict.winner == winner
    assert verdict.conclusion == conclusion
    assert verdict.raw == output


def test_parse_verdict_from_objects() -> None:
    class Decision(NamedTuple):
        winner: str
        conclusion: str

    assert parse_verdict(Decision("for", "Yes.")) == Verdict(winner="pro", conclusion="Yes.",
                                                               raw=Decision("for", "Yes."))
    given = Verdict(winner="con", conclusion="No.")
    assert parse_verdict(given) is given


@pytest.mark.anyio
async def test_judge_naming_a_debater_in_prose(runtime: Any) -> None:
    result = await AgentPatterns.debate(
        pro_agent=agent(lambda t: "upside", name="optimist"),
        con_agent=agent(lambda t: "downside", name="skeptic"),
        judge=agent(lambda t: "The skeptic wins: the evidence is thin.", name="analyst"),
        topic="T", rounds=1,
    )
    assert result.verdict.winner == "con"
    assert result.transcript[-1].metadata["winner"] == "con"


# -- failures and bad input -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_debater_that_raises_fails_the_run_naming_it(runtime: Any) -> None:
    judge_calls: list[str] = []

    def con(topic: str, ctx: RunContext) -> str:
        if ctx.round == 2:
            raise TimeoutError("model timed out")
        return "no"

    result = await AgentPatterns.debate(pro_agent=lambda t: "yes", con_agent=agent(con, name="skeptic"),
                                        judge=lambda t: judge_calls.append(t) or "Winner: pro",
                                        topic="T", rounds=3)

    assert result.status is TaskStatus.FAILED and result.verdict is None and result.winner is None
    assert "con agent 'skeptic' failed in round 2" in result.error and "model timed out" in result.error
    assert isinstance(result.exception, TimeoutError)
    assert judge_calls == []
    assert [m.role for m in result.transcript] == ["pro", "con", "pro"]


@pytest.mark.anyio
async def test_a_judge_that_returns_nothing_fails_the_run(runtime: Any) -> None:
    result = await AgentPatterns.debate(pro_agent=lambda t: "yes", con_agent=lambda t: "no",
                                        judge=agent(lambda t: None, name="silent"), topic="T", rounds=1)
    assert result.status is TaskStatus.FAILED
    assert "judge 'silent'" in result.error and "returned None" in result.error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rounds": 0}, "rounds must be >= 1"),
        ({"rounds": -2}, "rounds must be >= 1"),
        ({"rounds": "3"}, "whole number"),
        ({"rounds": True}, "whole number"),
        ({"judge": None}, "judge must be an agent"),
        ({"pro_agent": 42}, "pro_agent must be an agent"),
    ],
)
def test_bad_options_are_rejected_before_any_agent_runs(runtime: Any, options: dict[str, Any],
                                                        message: str) -> None:
    calls: list[str] = []

    def spy(topic: str) -> str:
        calls.append(topic)
        return "x"

    kwargs: dict[str, Any] = {"pro_agent": spy, "con_agent": spy, "judge": spy, "topic": "T", **options}
    with pytest.raises(ConfigurationError, match=message):
        AgentPatterns.debate(**kwargs)
    assert calls == []


# -- events ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_argument_and_the_verdict_are_events(runtime: Any) -> None:
    recorder = Recorder()
    runtime.register(recorder, "recorder")

    result = await AgentPatterns.debate(pro_agent=agent(lambda t: "yes", name="p"),
                                        con_agent=agent(lambda t: "no", name="c"),
                                        judge=agent(lambda t: "Winner: con", name="j"),
                                        topic="T", rounds=2)

    turns = [(e.task, e.round, e.phase) for e in recorder.events if e.kind == "team.turn"]
    assert turns == [("p", 1, "pro"), ("c", 1, "con"), ("p", 2, "pro"), ("c", 2, "con"),
                     ("j", 2, "judge")]
    assert recorder.events[0].kind == "team.started"
    done = recorder.events[-1]
    assert done.kind == "team.completed" and done.winner == "con" and done.run_id == result.run_id
    assert all(e.workflow == "debate" for e in recorder.events)


def test_an_unknown_option_is_named(runtime: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*max_rounds"):
        AgentPatterns.debate(pro_agent=lambda t: "a", con_agent=lambda t: "b", judge=lambda t: "c",
                             topic="T", max_rounds=3)


def test_times_come_from_the_runtime_clock(runtime: Any) -> None:
    from pyagent.testing import ManualClock

    runtime.clock = ManualClock(start=1000.0)
    say = agent(lambda topic: "Winner: pro. Fine.", name="judge")
    result = AgentPatterns.debate(pro_agent=lambda t: "yes", con_agent=lambda t: "no", judge=say,
                                  topic="t", rounds=1)
    assert result.ok and (result.started_at, result.finished_at) == (1000.0, 1000.0)


@pytest.mark.anyio
async def test_a_debater_that_does_not_answer_within_the_timeout_fails_the_run(runtime: Any) -> None:
    import anyio

    async def hangs(topic: str) -> str:
        await anyio.sleep_forever()
        return topic

    with anyio.fail_after(5):
        result = await AgentPatterns.debate(pro_agent=lambda t: "yes", con_agent=agent(hangs, name="skeptic"),
                                            judge=lambda t: "Winner: pro", topic="T", rounds=2,
                                            timeout=0.05)
    assert result.status is TaskStatus.FAILED
    assert "con agent 'skeptic' failed in round 1" in result.error and "timeout=0.05" in result.error
    assert isinstance(result.exception, TimeoutError)


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_timeout_must_be_positive_seconds(runtime: Any, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be None"):
        AgentPatterns.debate(pro_agent=lambda t: "y", con_agent=lambda t: "n", judge=lambda t: "pro",
                             topic="t", timeout=bad)


@pytest.mark.anyio
async def test_llm_judge_gives_a_structured_verdict(runtime: Any) -> None:
    judge_model = ScriptedModel([{"winner": "con", "conclusion": "Wait a year."}])
    result = await AgentPatterns.debate(
        pro_agent=agent(lambda t: "upside", name="optimist"), con_agent=agent(lambda t: "risk", name="skeptic"),
        judge=agent("You weigh arguments fairly.", name="judge", model=judge_model), topic="Invest?", rounds=1)
    assert result.ok and result.verdict is not None
    assert (result.verdict.winner, result.verdict.conclusion) == ("con", "Wait a year.")
    (request,) = judge_model.requests
    assert request.output is not None and request.output.name == "JudgeVerdict"
    assert request.output.schema["properties"]["winner"]["enum"] == ["pro", "con", "balanced"]
