"""Routing: ``handoff.team(agents).route(query)`` lets a router plugin pick the agent that answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from pyagent.plugin import (
    Agent,
    ConfigurationError,
    HandoffFailure,
    HandoffResult,
    HandoffSession,
    TaskStatus,
    as_agent,
    as_agents,
    max_hops_setting,
    resolve_router,
    run_or_await,
    score_agents,
)

DEFAULT_MIN_CONFIDENCE = 0.1
"""Below this best score a routing decision is reported as not confident."""

_TIE_EPSILON = 1e-9


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
        self.max_hops = max_hops_setting(max_hops)

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
        session = HandoffSession(name=self.name, max_hops=self.max_hops, known=known)
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
        except HandoffFailure as failed:
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
