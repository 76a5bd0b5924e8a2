"""The debate: pro and con argue in turn for a number of rounds, then the judge decides."""

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
from .result import DebateResult
from .verdict import JudgeVerdict, parse_verdict


class DebaterFailedError(PyAgentError):
    """A debater or the judge raised (or the judge returned nothing); the run fails naming it."""

    def __init__(self, role: str, agent: str, round: int | None, error: BaseException) -> None:
        self.role = role
        self.agent = agent
        self.round = round
        self.error = error
        where = f" in round {round}" if round is not None else ""
        who = "judge" if role == "judge" else f"{role} agent"
        super().__init__(f"{who} '{agent}' failed{where}: {type(error).__name__}: {error}")


def _labels(pro: Agent, con: Agent, judge: Agent) -> dict[str, str]:
    """Transcript names by role; a name shared by two roles gets the role appended."""
    names = {"pro": pro.name, "con": con.name, "judge": judge.name}
    counts = list(names.values())
    return {role: name if counts.count(name) == 1 else f"{name} ({role})" for role, name in names.items()}


class DebateTeam:
    """Two debaters and a judge. ``await team.run(topic)`` returns a :class:`DebateResult`.

    Each round the pro agent speaks, then the con agent, each seeing the transcript so far
    (``ctx.transcript``, ``ctx.round``, ``ctx.phase`` "pro"/"con"). The judge then sees the
    whole transcript (``ctx.phase == "judge"``) and its output is parsed into the verdict.
    """

    def __init__(self, pro: Agent, con: Agent, judge: Agent, *, rounds: int,
                 timeout: float | None = None) -> None:
        self.timeout = timeout
        self.pro = pro
        self.con = con
        self.judge = judge
        self.rounds = rounds
        self.labels = _labels(pro, con, judge)

    def __repr__(self) -> str:
        return (f"DebateTeam(pro={self.labels['pro']!r}, con={self.labels['con']!r}, "
                f"judge={self.labels['judge']!r}, rounds={self.rounds})")

    def _extra(self, topic: Any, role: str) -> dict[str, Any]:
        return {"topic": topic, "rounds": self.rounds, "role": role,
                "pro": self.labels["pro"], "con": self.labels["con"], "judge": self.labels["judge"]}

    def _debater_prompt(self, topic: Any, side: str, round: int, opening: bool) -> str:
        """The input of an instruction debater: topic, its side, the round; the transcript follows."""
        me, other = (("pro", "con") if side == "pro" else ("con", "pro"))
        stance = {"pro": "FOR", "con": "AGAINST"}
        task = ("Open the debate with your strongest case." if opening else
                "Answer the other side's latest arguments in the transcript below and make your case.")
        return (
            f"Debate topic: {render_input(topic)}\n\n"
            f"Round {round} of {self.rounds}. You are {self.labels[me]} and argue {stance[me]} "
            f"({me}); {self.labels[other]} argues {stance[other]} ({other}). {task}"
        )

    def _judge_prompt(self, topic: Any) -> str:
        rounds = f"{self.rounds} round" + ("s" if self.rounds != 1 else "")
        return (
            f"Debate topic: {render_input(topic)}\n\n"
            f"You are the judge. {self.labels['pro']} argued FOR (pro) and {self.labels['con']} "
            f"argued AGAINST (con) over {rounds}; the transcript is below. Weigh the arguments and "
            'give your verdict: start with "Winner: pro", "Winner: con" or "Winner: balanced", '
            "then your conclusion."
        )

    async def run(self, topic: Any) -> DebateResult:
        """Run every round, then the judge; a failure ends the run with a failed result."""
        enclosing = current_run()  # inside a workflow step, the team run is part of that run
        run_id = enclosing.run_id if enclosing is not None else uuid.uuid4().hex
        clock = get_runtime().clock
        result = DebateResult(run_id=run_id, topic=topic, started_at=clock.time())
        emit(ev.TEAM_STARTED, run_id, status="running", input=topic,
             agents=[self.labels["pro"], self.labels["con"], self.labels["judge"]])
        transcript: list[Message] = []
        try:
            for round in range(1, self.rounds + 1):
                for side, agent in (("pro", self.pro), ("con", self.con)):
                    ctx = RunContext(transcript=list(transcript), round=round, phase=side,
                                     run_id=run_id, extra=self._extra(topic, side))
                    prompt = topic
                    if isinstance(agent, InstructionAgent):
                        prompt = self._debater_prompt(topic, side, round, opening=not transcript)
                    try:
                        argument = await call_agent(agent, prompt, ctx, timeout=self.timeout)
                    except Exception as exc:
                        raise DebaterFailedError(side, self.labels[side], round, exc) from exc
                    transcript.append(Message(self.labels[side], argument, round, role=side))
                    result.arguments[side].append(argument)
                    emit(ev.TEAM_TURN, run_id, agent=self.labels[side], status="completed",
                         round=round, phase=side, output=argument)
                result.rounds = round
                emit(ev.TEAM_ROUND, run_id, status="completed", round=round)
            verdict_output = await self._judge(topic, transcript, run_id)
        except Exception as exc:
            result.status = TaskStatus.FAILED
            result.error = str(exc) if isinstance(exc, PyAgentError) else f"{type(exc).__name__}: {exc}"
            result.exception = exc.error if isinstance(exc, DebaterFailedError) else exc
            result.transcript = transcript
            result.finished_at = clock.time()
            emit(ev.TEAM_FAILED, run_id, status="failed", error=result.error, rounds=result.rounds)
            return result
        verdict = parse_verdict(verdict_output, pro_names=[self.pro.name, self.labels["pro"]],
                                con_names=[self.con.name, self.labels["con"]])
        transcript.append(Message(self.labels["judge"], verdict_output, self.rounds, role="judge",
                                  metadata={"winner": verdict.winner}))
        result.verdict = verdict
        result.output = verdict.conclusion
        result.transcript = transcript
        result.finished_at = clock.time()
        emit(ev.TEAM_TURN, run_id, agent=self.labels["judge"], status="completed",
             round=self.rounds, phase="judge", output=verdict_output, winner=verdict.winner)
        emit(ev.TEAM_COMPLETED, run_id, status="completed", output=result.output,
             winner=verdict.winner, rounds=result.rounds)
        return result

    async def _judge(self, topic: Any, transcript: list[Message], run_id: str) -> Any:
        ctx = RunContext(transcript=list(transcript), round=self.rounds, phase="judge",
                         run_id=run_id, extra=self._extra(topic, "judge"))
        prompt = self._judge_prompt(topic) if isinstance(self.judge, InstructionAgent) else topic
        try:
            # A model judge answers as structured output; prose is still read by parse_verdict.
            output = await call_agent(self.judge, prompt, ctx, timeout=self.timeout, output_type=JudgeVerdict)
        except Exception as exc:
            raise DebaterFailedError("judge", self.labels["judge"], None, exc) from exc
        if output is None:
            raise DebaterFailedError("judge", self.labels["judge"], None, ValueError(
                "returned None: a judge returns its verdict, as text or a dict with "
                "'winner' (pro/con/balanced) and 'conclusion'"))
        return output


def build(*, pro_agent: Any, con_agent: Any, judge: Any, rounds: Any = 3, timeout: Any = None) -> DebateTeam:
    """Validate the options and build a team; every mistake is reported before any agent runs."""
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise ConfigurationError(f"rounds must be a whole number >= 1, got {rounds!r}: e.g. rounds=3")
    if rounds < 1:
        raise ConfigurationError(
            f"rounds must be >= 1, got {rounds}: each round is one argument from pro and one from "
            "con, and the judge needs at least one exchange to weigh (e.g. rounds=3)"
        )
    return DebateTeam(
        as_agent(pro_agent, what="pro_agent"),
        as_agent(con_agent, what="con_agent"),
        as_agent(judge, what="judge"),
        rounds=rounds,
        timeout=check_timeout(timeout),
    )
