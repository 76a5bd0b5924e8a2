"""Handoffs: one agent passes the work to another, directly, by routing, or along a chain.

``handoff(from_agent=, to_agent=, context=)`` runs ``to_agent`` on the context, with what
``from_agent`` already produced (``from_output=``) in its run context; ``from_agent`` itself is
not run again, because by the time a caller hands off, the first agent has done its part.
``handoff.team([...]).route(query)`` lets a router plugin pick the agent; ``handoff.chain(...)``
passes the work along a list of agents.

Any agent may also pass control on by returning ``handoff.to(other, reason=...)``, or by
calling ``handoff(...)`` itself while it runs. Those agent-requested transfers are what can
loop (A hands to B, B hands back to A), so they are the hops ``max_hops`` counts, along the
whole path of nested calls; the planned handoffs of a chain, a route or an explicit
``handoff()`` made by code outside any agent are not counted, so a chain of any length runs. Every handoff, planned or requested, is
recorded on the result (from, to, reason, time) and broadcast to monitors as a ``handoff`` event.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from pyagent._sync import run_or_await
from pyagent.engine.teams import TeamResult
from pyagent.errors import ConfigurationError, HandoffLoopError, PluginNotInstalledError
from pyagent.model.agents import Agent, InstructionAgent, as_agent, as_agents, render_input
from pyagent.model.context import Message, RunContext
from pyagent.model.events import HANDOFF, Event
from pyagent.model.tasks import TaskStatus
from pyagent.plugins import get_runtime

DEFAULT_MAX_HOPS = 10
"""Agent-requested transfers allowed in one call unless ``max_hops=`` or PYAGENT_HANDOFF_MAX_HOPS says otherwise."""

DEFAULT_MIN_CONFIDENCE = 0.1
"""Below this best score a routing decision is reported as not confident."""

_TIE_EPSILON = 1e-9
_MISSING: Any = object()


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


class HandoffRecord(BaseModel):
    """One handoff in the audit trail: who passed the work to whom, why, and when."""

    from_agent: str
    to_agent: str
    reason: str = ""
    timestamp: float
    hop: int
    mode: str = "handoff"  # handoff | route | chain | transfer


class HandoffResult(TeamResult):
    """What ``handoff(...)`` returns: ``.agent`` answered, ``.handoffs`` is the audit trail."""

    pattern: str = "handoff"
    agent: str | None = None
    handoffs: list[HandoffRecord] = Field(default_factory=list)

    @property
    def handoff(self) -> HandoffRecord | None:
        """The first handoff of the call (the explicit one, for ``handoff(...)``)."""
        return self.handoffs[0] if self.handoffs else None

    @property
    def transfers(self) -> int:
        """How many handoffs the agents requested themselves (the hops ``max_hops`` bounds)."""
        return sum(1 for r in self.handoffs if r.mode == "transfer")


R = TypeVar("R", bound=HandoffResult)


class RouteScores(BaseModel):
    """Why a router picked an agent: every agent's score, best first, and how sure it was.

    ``tie`` is set when several agents share the best score (``tied`` names them; the first
    in team order wins); ``confident`` is False when the best score is below
    ``min_confidence`` (then the team's ``fallback`` agent answers, if it has one).
    """

    router: str
    ranking: list[tuple[str, float]]
    chosen: str
    tie: bool = False
    tied: list[str] = Field(default_factory=list)
    confident: bool = True
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    fallback_used: bool = False

    @property
    def best(self) -> float:
        """The highest score."""
        return self.ranking[0][1] if self.ranking else 0.0

    def as_dict(self) -> dict[str, float]:
        """Scores by agent name."""
        return dict(self.ranking)

    def __getitem__(self, name: str) -> float:
        for agent_name, score in self.ranking:
            if agent_name == name:
                return score
        raise KeyError(f"no score for agent {name!r}: scored {[n for n, _ in self.ranking]}")

    def __contains__(self, name: object) -> bool:
        return any(agent_name == name for agent_name, _ in self.ranking)


class RouteResult(HandoffResult):
    """What ``team.route(query)`` returns: ``.agent`` answered, ``.scores`` says why it was picked."""

    pattern: str = "route"
    query: Any = None
    scores: RouteScores | None = None


class ChainStep(BaseModel):
    """One agent's turn in a chain."""

    agent: str
    input: Any = None
    output: Any = None


class ChainResult(HandoffResult):
    """What ``handoff.chain(...)`` returns: ``.output`` is the last agent's, ``.steps`` every turn."""

    pattern: str = "chain"
    steps: list[ChainStep] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# agent-requested transfers
# ---------------------------------------------------------------------------------------------


class Transfer:
    """An agent's request to pass control on; build one with ``handoff.to(agent, reason=...)``."""

    __slots__ = ("input", "reason", "target")

    def __init__(self, target: Any, *, reason: str = "", input: Any = _MISSING) -> None:
        if target is None:
            raise ConfigurationError("handoff.to(...) needs the agent (or its name) to hand off to")
        self.target = target
        self.reason = reason
        self.input = input

    def __repr__(self) -> str:
        name = self.target if isinstance(self.target, str) else getattr(self.target, "name", self.target)
        return f"Transfer(to={name!r}, reason={self.reason!r})"


def _max_hops(value: int | None) -> int:
    if value is None:
        env = os.environ.get("PYAGENT_HANDOFF_MAX_HOPS")
        if not env:
            return DEFAULT_MAX_HOPS
        try:
            value = int(env)
        except ValueError:
            raise ConfigurationError(
                f"PYAGENT_HANDOFF_MAX_HOPS={env!r} is not a whole number: set it to e.g. 10"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_hops must be a whole number >= 0, got {value!r}")
    return value


class _Session:
    """One handoff call: its run id, audit trail, shared state and transcript, and the hop count.

    A handoff call made by an agent while another call runs it is nested: it continues that
    call's path, so its hops start where the enclosing call's stood (``base``) and the
    enclosing limit applies. Agents calling ``handoff()`` on each other thus end at the hop
    limit like agents returning ``handoff.to(...)``.
    """

    def __init__(self, *, name: str, max_hops: int, known: Iterable[Agent]) -> None:
        from pyagent.engine.run import current_run

        self.runtime = get_runtime()
        self.name = name
        # Inside a workflow run, a handoff belongs to that run: same id, same audit trail.
        run = current_run()
        self.run_id = run.run_id if run is not None else uuid.uuid4().hex
        self.max_hops = max_hops
        self.known: dict[str, Agent] = {}
        for a in known:
            self.known.setdefault(a.name, a)
        self.records: list[HandoffRecord] = []
        self.transcript: list[Message] = []
        self.state: dict[str, Any] = {}
        self.transfers: int = 0
        self.started_at = self.runtime.clock.time()
        self.base = 0
        self.path: list[str] = []
        enclosing = _RUNNING.get()
        if enclosing is not None:
            parent, caller = enclosing
            self.base = parent.base + parent.transfers + 1
            self.path = [*parent.path, caller]
            self.max_hops = min(max_hops, parent.max_hops)

    def record(self, from_agent: str, to_agent: str, reason: str, mode: str) -> HandoffRecord:
        rec = HandoffRecord(from_agent=from_agent, to_agent=to_agent, reason=reason,
                            timestamp=self.runtime.clock.time(), hop=len(self.records) + 1, mode=mode)
        self.records.append(rec)
        announce_handoff(from_agent, to_agent, reason, mode=mode, source=self.name, run_id=self.run_id,
                         timestamp=rec.timestamp, hop=rec.hop)
        return rec

    def resolve(self, target: Any, source: Agent) -> Agent:
        if isinstance(target, str):
            found = self.known.get(target)
            if found is None:
                raise ConfigurationError(
                    f"agent '{source.name}' handed off to '{target}', which is not known here "
                    f"(known agents: {', '.join(self.known) or 'none'}): return "
                    "handoff.to(<agent object>) or add the agent to the team"
                )
            return found
        agent = as_agent(target, what=f"handoff target of agent '{source.name}'")
        self.known.setdefault(agent.name, agent)
        return agent

    def _nested_loop_error(self, target: Agent) -> HandoffLoopError:
        shown = " → ".join([*self.path[-self.max_hops - 1:], target.name])
        return HandoffLoopError(
            f"handoff loop: agent '{self.path[-1]}' started a handoff to '{target.name}' "
            f"{self.base} hops deep but max_hops={self.max_hops} (recent path: {shown}); make an "
            "agent answer instead of handing off, or raise max_hops if the path is legitimate"
        )

    def _loop_error(self, source: Agent, target: Agent) -> HandoffLoopError:
        path = [r.from_agent for r in self.records if r.mode == "transfer"][-self.max_hops:]
        shown = " → ".join([*path, source.name, target.name])
        return HandoffLoopError(
            f"handoff loop: agent '{source.name}' asked for hop {self.transfers} to '{target.name}' "
            f"but max_hops={self.max_hops} (recent path: {shown}); make an agent answer instead of "
            "handing off, or raise max_hops if the path is legitimate"
        )

    async def run(self, agent: Agent, input: Any, *, result: Any = None,
                  via: HandoffRecord | None = None, results: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> tuple[Agent, Any]:
        """Run ``agent`` and follow the transfers it (and its successors) request, within the hop limit."""
        current, value = agent, input
        if self.base > self.max_hops:
            raise _AgentFailed(agent, self._nested_loop_error(agent))
        while True:
            ctx = RunContext(run_id=self.run_id, state=self.state, transcript=self.transcript,
                             result=result, results=dict(results) if results else None,
                             extra={**(extra or {}), "handoff": via, "handoffs": self.records})
            token = _RUNNING.set((self, current.name))
            try:
                out = await current.run(value, ctx)
            except Exception as exc:
                raise _AgentFailed(current, exc) from exc
            finally:
                _RUNNING.reset(token)
            if not isinstance(out, Transfer):
                return current, out
            self.transfers += 1
            try:
                target = self.resolve(out.target, current)
            except ConfigurationError as exc:
                raise _AgentFailed(current, exc) from exc
            if self.base + self.transfers > self.max_hops:
                raise _AgentFailed(current, self._loop_error(current, target))
            via = self.record(current.name, target.name, out.reason, "transfer")
            note = out.reason or f"handed off to {target.name}"
            self.transcript.append(Message(current.name, note, round=via.hop, role="handoff"))
            if out.input is not _MISSING:
                value = out.input
            current = target

    def finish(self, result: R, agent: Agent | None, output: Any,
               failure: _AgentFailed | None = None) -> R:
        result.run_id = self.run_id
        result.handoffs = self.records
        result.transcript = self.transcript
        result.started_at = self.started_at
        result.finished_at = self.runtime.clock.time()
        if failure is None:
            result.agent = agent.name if agent is not None else None
            result.output = output
            return result
        result.agent = failure.agent.name
        result.status = TaskStatus.FAILED
        result.exception = failure.error
        cause = failure.error
        if isinstance(cause, HandoffLoopError):
            result.error = str(cause)
        else:
            result.error = f"agent '{failure.agent.name}' failed: {type(cause).__name__}: {cause}"
        return result


_RUNNING: ContextVar[tuple[_Session, str] | None] = ContextVar("pyagent_handoff_running", default=None)
"""The handoff call and the agent it is running, so a handoff that agent starts is nested in it."""


class _AgentFailed(Exception):
    """Internal: carries which agent failed to the result builder."""

    def __init__(self, agent: Agent, error: BaseException) -> None:
        super().__init__(str(error))
        self.agent = agent
        self.error = error


def announce_handoff(from_agent: str, to_agent: str, reason: str, *, mode: str, source: str,
                     run_id: str, timestamp: float | None = None, **data: Any) -> None:
    """Make a handoff visible: a ``handoff`` event to every monitor, and the audit trail of the run.

    Inside a workflow run (a handoff made by one of its agents) the run records it in its
    history and delivers the event to its listeners; outside any run the event is broadcast.
    Patterns that pass work between agents (a supervisor delegating) announce it here too.
    """
    from pyagent.engine.run import current_run

    run = current_run()
    if run is not None:
        run.record_handoff(from_agent, to_agent, reason, mode=mode, source=source, **data)
        return
    when = get_runtime().clock.time() if timestamp is None else timestamp
    get_runtime().broadcast(Event(
        HANDOFF, workflow=source, run_id=run_id, task=to_agent, timestamp=when,
        data={"from_agent": from_agent, "to_agent": to_agent, "reason": reason, "timestamp": when,
              "mode": mode, **data},
    ))


# ---------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------


def resolve_router(spec: Any = None) -> tuple[str, Any]:
    """``(name, router)`` for ``router=``: None (the default router), a registered name, or a router object."""
    if spec is None:
        rt = get_runtime()
        name = rt.default_router_name()
        if name is None:
            raise PluginNotInstalledError("router", "keyword", "pyagent-keyword-router", [])
        return name, rt.lookup("router", name)
    if isinstance(spec, str):
        return spec, get_runtime().lookup("router", spec)
    if callable(getattr(spec, "score", None)):
        return str(getattr(spec, "name", type(spec).__name__)), spec
    raise ConfigurationError(
        f"router= must be a router name or an object with score(query, agents), got {spec!r}"
    )


async def score_agents(router: Any, router_name: str, query: Any, agents: Sequence[Agent]) -> list[tuple[str, float]]:
    """Ask ``router`` to score ``agents`` for ``query``; return every agent's score, best first.

    Routers may be sync or async (an embedding or LLM router awaits its model). Agents the
    router leaves out score 0; equal scores keep the team's order.
    """
    raw = router.score(query, list(agents))
    if inspect.isawaitable(raw):
        raw = await raw
    order = {a.name: i for i, a in enumerate(agents)}
    scores = dict.fromkeys(order, 0.0)
    try:
        pairs = [(str(n), float(s)) for n, s in raw]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"router '{router_name}' returned {raw!r}: score() must return a list of (agent name, score) pairs"
        ) from None
    for name, score in pairs:
        if name not in scores:
            raise ConfigurationError(
                f"router '{router_name}' scored an agent named {name!r} that is not in the team "
                f"({', '.join(order)})"
            )
        scores[name] = score
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


class HandoffTeam:
    """Agents behind one entry point; ``route(query)`` lets the router pick who answers.

    ``router`` names a router plugin (default: the installed default router) or is a router
    object. ``fallback`` answers when the best score is below ``min_confidence``.
    """

    def __init__(
        self,
        agents: Iterable[Any],
        *,
        router: Any = None,
        name: str = "team",
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        fallback: Any = None,
        max_hops: int | None = None,
    ) -> None:
        self.agents = as_agents(agents, what="team agent", distinct_because="the router picks one by name")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigurationError(f"min_confidence must be within 0..1, got {min_confidence!r}")
        if router is not None and not isinstance(router, str):
            resolve_router(router)  # reject a bad router object now, not at the first query
        self.router = router
        self.name = name
        self.min_confidence = min_confidence
        self.fallback = as_agent(fallback, what="fallback agent") if fallback is not None else None
        self.max_hops = _max_hops(max_hops)

    def __getitem__(self, name: str) -> Agent:
        for a in self.agents:
            if a.name == name:
                return a
        if self.fallback is not None and self.fallback.name == name:
            return self.fallback
        raise KeyError(f"no agent named {name!r} in team {self.name!r}: {[a.name for a in self.agents]}")

    async def rank(self, query: Any, *, router: Any = None) -> RouteScores:
        """Score every agent for ``query`` without running any."""
        router_name, impl = resolve_router(router if router is not None else self.router)
        return await self._rank(query, router_name, impl)

    async def _rank(self, query: Any, router_name: str, impl: Any) -> RouteScores:
        ranking = await score_agents(impl, router_name, query, self.agents)
        best = ranking[0][1]
        tied = [n for n, s in ranking if abs(s - best) <= _TIE_EPSILON]
        confident = best >= self.min_confidence and best > 0.0
        chosen = ranking[0][0]
        fallback_used = False
        if not confident and self.fallback is not None:
            chosen, fallback_used = self.fallback.name, True
        return RouteScores(router=router_name, ranking=ranking, chosen=chosen, tie=len(tied) > 1,
                           tied=tied if len(tied) > 1 else [], confident=confident,
                           min_confidence=self.min_confidence, fallback_used=fallback_used)

    async def run(self, query: Any, *, router: Any = None) -> RouteResult:
        """Route ``query`` and run the chosen agent (a coroutine; ``route`` is the one-call helper)."""
        router_name, impl = resolve_router(router if router is not None else self.router)
        return await self._run(query, router_name, impl)

    async def _run(self, query: Any, router_name: str, impl: Any) -> RouteResult:
        known = [*self.agents, *([self.fallback] if self.fallback is not None else [])]
        session = _Session(name=self.name, max_hops=self.max_hops, known=known)
        result = RouteResult(query=query)
        try:
            scores = await self._rank(query, router_name, impl)
        except Exception as exc:
            session.finish(result, None, None)
            result.status, result.exception = TaskStatus.FAILED, exc
            result.error = f"routing failed: {type(exc).__name__}: {exc}"
            return result
        result.scores = scores
        chosen = self[scores.chosen]
        reason = _route_reason(scores)
        via = session.record(f"router:{router_name}", chosen.name, reason, "route")
        try:
            answered, output = await session.run(chosen, query, via=via)
        except _AgentFailed as failed:
            session.finish(result, None, None, failed)
            return result
        session.finish(result, answered, output)
        return result

    def route(self, query: Any, *, router: Any = None) -> Any:
        """Route ``query`` to the best agent and run it: the result from sync code, an awaitable in a loop.

        The router is resolved first, so a missing router plugin raises here, before any agent runs.
        """
        router_name, impl = resolve_router(router if router is not None else self.router)
        return run_or_await(lambda: self._run(query, router_name, impl))

    def __repr__(self) -> str:
        return f"HandoffTeam({self.name!r}, agents={[a.name for a in self.agents]})"


def _route_reason(scores: RouteScores) -> str:
    parts = [f"{scores.router} router scored {scores.chosen!r} {scores.best:.2f}"]
    if scores.fallback_used:
        parts = [f"{scores.router} router's best score {scores.best:.2f} is below "
                 f"{scores.min_confidence:.2f}: fallback {scores.chosen!r}"]
    if scores.tie:
        parts.append(f"tie between {', '.join(scores.tied)}")
    if not scores.confident:
        parts.append("low confidence")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------


class Handoff:
    """``handoff(from_agent=, to_agent=, context=)``, plus ``handoff.team``, ``handoff.chain`` and ``handoff.to``.

    The one-call forms return the result from synchronous code and an awaitable inside a
    running event loop; a failed agent gives a failed result (``.status``, ``.error``), not an
    exception, while bad arguments raise at once.
    """

    def __call__(
        self,
        from_agent: Any = None,
        to_agent: Any = None,
        context: Any = None,
        *,
        from_output: Any = _MISSING,
        reason: str | None = None,
        max_hops: int | None = None,
    ) -> Any:
        """Run ``to_agent`` on ``context``; what ``from_agent`` produced (``from_output=``) goes with it.

        ``to_agent`` gets ``context`` as its input; ``from_output`` is ``ctx.result`` and, as a
        transcript message from ``from_agent``, part of an LLM agent's prompt. ``from_agent`` may
        be an agent or just its name. The reason recorded defaults to the context when it is text.
        """
        if to_agent is None:
            raise ConfigurationError("handoff(...) needs to_agent=: the agent that takes over")
        if from_agent is None:
            raise ConfigurationError("handoff(...) needs from_agent=: the agent handing the work over")
        origin = None if isinstance(from_agent, str) else as_agent(from_agent, what="from_agent")
        source = origin.name if origin is not None else str(from_agent)
        target = as_agent(to_agent, what="to_agent")
        hops = _max_hops(max_hops)
        why = reason if reason is not None else (context if isinstance(context, str) else "")
        known = [target] if origin is None else [origin, target]

        async def go() -> HandoffResult:
            session = _Session(name="handoff", max_hops=hops, known=known)
            result = HandoffResult()
            previous = None
            if from_output is not _MISSING:
                previous = from_output
                session.transcript.append(Message(source, from_output, role="handoff"))
            via = session.record(source, target.name, why, "handoff")
            try:
                answered, output = await session.run(target, context, result=previous, via=via)
            except _AgentFailed as failed:
                return session.finish(result, None, None, failed)
            return session.finish(result, answered, output)

        return run_or_await(go)

    @staticmethod
    def to(agent: Any, *, reason: str = "", input: Any = _MISSING) -> Transfer:
        """Return this from an agent to pass control to ``agent`` (an agent or a team member's name).

        The next agent gets the same input unless ``input=`` replaces it; ``reason`` is recorded.
        """
        return Transfer(agent, reason=reason, input=input)

    @staticmethod
    def team(
        agents: Iterable[Any],
        *,
        router: Any = None,
        name: str = "team",
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        fallback: Any = None,
        max_hops: int | None = None,
    ) -> HandoffTeam:
        """A team whose ``route(query)`` lets the router pick the agent that answers."""
        return HandoffTeam(agents, router=router, name=name, min_confidence=min_confidence,
                           fallback=fallback, max_hops=max_hops)

    @staticmethod
    def chain(
        agents: Iterable[Any] | None = None,
        task: Any = None,
        pass_output: bool = True,
        *,
        name: str = "chain",
        max_hops: int | None = None,
    ) -> Any:
        """Hand the work along ``agents`` in order.

        With ``pass_output=True`` each agent's input is the previous agent's output (the first
        gets ``task``); with ``False`` every agent gets ``task``. The result's ``.output`` is the
        last agent's output and ``.steps`` holds every turn.

        Every agent also finds the task in ``ctx.extra["task"]`` and, when outputs are passed on,
        the earlier agents' outputs in ``ctx.results`` (by agent name), so the last of a chain
        still knows what the chain is for; an instruction (LLM) agent reads both in its prompt.
        """
        members = as_agents(agents or [], what="chain agent")
        hops = _max_hops(max_hops)

        async def go() -> ChainResult:
            session = _Session(name=name, max_hops=hops, known=members)
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
                except _AgentFailed as failed:
                    return session.finish(result, None, None, failed)
                result.steps.append(ChainStep(agent=previous.name, input=step_input, output=value))
                key, n = previous.name, 1
                while key in outputs:
                    n += 1
                    key = f"{previous.name}#{n}"
                outputs[key] = value
            return session.finish(result, previous, value)

        return run_or_await(go)

    def __repr__(self) -> str:
        return "pyagent.handoff"


handoff = Handoff()
"""The handoff entry point: call it, or use ``handoff.team``, ``handoff.chain``, ``handoff.to``."""
