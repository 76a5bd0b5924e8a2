"""The consensus team: answer independently, read each other's answers, revise, measure agreement."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from pyagent.plugin import (
    Agent,
    ConfigurationError,
    InstructionAgent,
    Message,
    PyAgentError,
    RunContext,
    TaskGroup,
    TaskStatus,
    as_agent,
    call_agent,
    check_timeout,
    current_run,
    first_error,
    get_runtime,
    render_input,
)
from pyagent.plugin import events as ev

from .agreement import Same, check_threshold, measure, resolve_equivalence
from .events import emit
from .result import ConsensusResult

# Agreement is a ratio of small integers; compare with a tolerance so 4/5 meets 0.8.
_EPSILON = 1e-9


class Vote(BaseModel):
    """What a model agent is asked for as structured output: a short answer to compare, and why."""

    answer: str = Field(description="your answer, as short as it can be while complete (e.g. 'yes', "
                                    "'adopt it in Q3'): answers are compared to measure agreement")
    reasoning: str = Field(description="why, in a few sentences")


class AgentFailedError(PyAgentError):
    """An agent of the consensus raised; the run ends with a failed result naming it."""

    def __init__(self, agent: str, round: int, error: BaseException) -> None:
        self.agent = agent
        self.round = round
        self.error = error
        super().__init__(f"agent '{agent}' failed in round {round}: {type(error).__name__}: {error}")


class EquivalenceError(PyAgentError):
    """The equivalence function raised while comparing two answers."""


def _labels(agents: list[Agent]) -> list[str]:
    """Transcript names: the agent's name, numbered when the same name appears twice.

    Passing one agent several times (self-consistency sampling of a stochastic model) is
    legitimate, and each copy needs its own place in the transcript.
    """
    seen: Counter[str] = Counter()
    labels = []
    for agent in agents:
        seen[agent.name] += 1
        labels.append(agent.name if seen[agent.name] == 1 else f"{agent.name}#{seen[agent.name]}")
    return labels


def _revision_prompt(task: Any, label: str, round: int, max_rounds: int,
                     transcript: list[Message] | None = None) -> str:
    """What an instruction agent reads as its input in rounds after the first.

    The transcript itself is rendered below this text by the agent (``render_prompt``); the
    reasons model agents gave for their last answers are listed here.
    """
    reasons = [f"- {m.agent}: {m.metadata['reasoning']}" for m in transcript or []
               if m.round == round - 1 and m.metadata.get("reasoning")]
    why = ("\n\nTheir reasons:\n" + "\n".join(reasons)) if reasons else ""
    return (
        f"{render_input(task)}\n\n"
        f"Round {round} of {max_rounds}. You are {label}. The transcript below holds every "
        "agent's answer so far. Give your answer again: keep it, or revise it if the other "
        f"answers convinced you.{why}"
    )


class ConsensusTeam:
    """Agents that answer a task and revise until enough of them agree.

    Built by the consensus pattern plugin; ``await team.run(task)`` returns a
    :class:`ConsensusResult`. Round 1 runs every agent concurrently on the task alone; each
    later round shows every agent the transcript of earlier rounds (``ctx.transcript``).
    """

    def __init__(
        self,
        agents: list[Agent],
        *,
        max_rounds: int,
        agreement_threshold: float,
        same: Same,
        equivalence_label: str,
        timeout: float | None = None,
    ) -> None:
        self.agents = agents
        self.labels = _labels(agents)
        self.max_rounds = max_rounds
        self.agreement_threshold = agreement_threshold
        self.same = same
        self.equivalence_label = equivalence_label
        self.timeout = timeout

    def __repr__(self) -> str:
        return (f"ConsensusTeam(agents={self.labels}, max_rounds={self.max_rounds}, "
                f"agreement_threshold={self.agreement_threshold})")

    async def run(self, task: Any) -> ConsensusResult:
        """Run rounds until agreement reaches the threshold or ``max_rounds`` ran out."""
        enclosing = current_run()  # inside a workflow step, the team run is part of that run
        run_id = enclosing.run_id if enclosing is not None else uuid.uuid4().hex
        clock = get_runtime().clock
        result = ConsensusResult(
            run_id=run_id, started_at=clock.time(), threshold=self.agreement_threshold,
            max_rounds=self.max_rounds, equivalence=self.equivalence_label,
        )
        emit(ev.TEAM_STARTED, run_id, status="running", input=task, agents=list(self.labels))
        transcript: list[Message] = []
        try:
            for round in range(1, self.max_rounds + 1):
                answers, reasons = await self._round(task, round, transcript, run_id)
                transcript.extend(
                    Message(label, answer, round, role="answer" if round == 1 else "revision",
                            metadata={"reasoning": why} if why else None)
                    for label, answer, why in zip(self.labels, answers, reasons, strict=True)
                )
                try:
                    agreement = measure(answers, self.same)
                except Exception as exc:
                    raise EquivalenceError(
                        f"the equivalence ({self.equivalence_label}) raised {type(exc).__name__}: "
                        f"{exc} while comparing round {round} answers: fix the function"
                    ) from exc
                result.rounds = round
                result.answers = dict(zip(self.labels, answers, strict=True))
                result.agreement = agreement.fraction
                result.agreement_by_round.append(agreement.fraction)
                result.supporters = [self.labels[i] for i in agreement.members]
                result.output = answers[agreement.representative]
                result.tie = agreement.tied
                # Two equal halves can each meet a threshold of 0.5 or less: that is a split.
                result.reached = (agreement.fraction >= self.agreement_threshold - _EPSILON
                                  and not agreement.tied)
                emit(ev.TEAM_ROUND, run_id, status="completed", round=round,
                     agreement=agreement.fraction, reached=result.reached, tie=agreement.tied,
                     output=result.output,
                     supporters=list(result.supporters))
                if result.reached:
                    break
        except Exception as exc:
            error = first_error(exc)
            result.status = TaskStatus.FAILED
            result.error = str(error) if isinstance(error, PyAgentError) else (
                f"{type(error).__name__}: {error}")
            result.exception = error.error if isinstance(error, AgentFailedError) else error
            result.reached = False
            result.transcript = transcript
            result.finished_at = clock.time()
            emit(ev.TEAM_FAILED, run_id, status="failed", error=result.error, rounds=result.rounds)
            return result
        result.transcript = transcript
        result.finished_at = clock.time()
        emit(ev.TEAM_COMPLETED, run_id, status="completed", output=result.output,
             agreement=result.agreement, rounds=result.rounds, reached=result.reached)
        return result

    async def _round(self, task: Any, round: int, transcript: list[Message],
                     run_id: str) -> tuple[list[Any], list[str | None]]:
        """Every agent answers once, concurrently; answers (and a model's reasons) come back in agent order."""
        answers: list[Any] = [None] * len(self.agents)
        reasons: list[str | None] = [None] * len(self.agents)
        phase = "answer" if round == 1 else "revise"
        previous = {m.agent: m.content for m in transcript if m.round == round - 1}

        async def turn(index: int) -> None:
            agent, label = self.agents[index], self.labels[index]
            ctx = RunContext(
                transcript=list(transcript), round=round, phase=phase, run_id=run_id,
                extra={"agent": label, "max_rounds": self.max_rounds,
                       "previous_answer": previous.get(label)},
            )
            prompt = task
            if round > 1 and isinstance(agent, InstructionAgent):
                prompt = _revision_prompt(task, label, round, self.max_rounds, transcript)
            try:
                # A model agent votes as structured output, so its short answer is what is
                # compared; one that answers in prose anyway is compared on its whole text.
                reply = await call_agent(agent, prompt, ctx, timeout=self.timeout, output_type=Vote)
            except Exception as exc:
                raise AgentFailedError(label, round, exc) from exc
            if isinstance(reply, Vote):
                reply, reasons[index] = reply.answer, reply.reasoning
            answers[index] = reply
            emit(ev.TEAM_TURN, run_id, agent=label, status="completed", round=round, phase=phase,
                 output=reply)

        async with TaskGroup() as tg:
            for index in range(len(self.agents)):
                tg.start_soon(turn, index)
        return answers, reasons


def _check_rounds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"max_rounds must be a whole number >= 1, got {value!r}: e.g. max_rounds=3")
    if value < 1:
        raise ConfigurationError(
            f"max_rounds must be >= 1, got {value}: round 1 is the agents' independent answers, "
            "so at least one round must run (e.g. max_rounds=3)"
        )
    return value


def build(
    *,
    agents: Any,
    max_rounds: Any = 3,
    agreement_threshold: Any = 0.8,
    equivalence: Any = None,
    router: str | None = None,
    similarity_threshold: float = 0.8,
    timeout: Any = None,
) -> ConsensusTeam:
    """Validate the options and build a team; every mistake is reported before any agent runs."""
    if agents is None or isinstance(agents, (str, bytes)) or not hasattr(agents, "__iter__"):
        raise ConfigurationError(
            f"agents must be a list of agents, got {type(agents).__name__}: "
            "e.g. agents=[expert1, expert2, expert3]"
        )
    members = [as_agent(a, what=f"agents[{i}]") for i, a in enumerate(agents)]
    if not members:
        raise ConfigurationError("agents is empty: consensus needs at least one agent, e.g. agents=[a, b, c]")
    same, label = resolve_equivalence(equivalence, router=router, similarity_threshold=similarity_threshold)
    return ConsensusTeam(
        members,
        max_rounds=_check_rounds(max_rounds),
        agreement_threshold=check_threshold(agreement_threshold),
        same=same,
        equivalence_label=label,
        timeout=check_timeout(timeout),
    )
