"""The LLM router: ask a model to choose, validate the choice, fall back to keyword scoring.

The fallback router is found through the kernel's router registry (``resolve_router``), never
imported: this plugin works with whatever router is installed under the fallback's name, and
says plainly when none is.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from pyagent.plugin import (
    Event,
    PluginNotInstalledError,
    PyAgentError,
    RunContext,
    agent,
    current_run,
    get_runtime,
    render_input,
    resolve_router,
)

log = logging.getLogger("pyagent.llm_router")

ROUTER_FALLBACK = "router.fallback"
INSTRUCTIONS = (
    "You route a user's message to the one agent best suited to handle it. You are given the "
    "message and the agents, each with its name and what it handles. Choose exactly one agent by "
    "its name as listed, say how confident you are (0 to 1) and give a one-sentence reason."
)


@dataclass
class Decision:
    """How one query was routed: by the model, or by the fallback router and why."""

    query: str
    chosen: str | None
    by: str  # "llm" or the fallback router's name
    confidence: float | None = None
    reason: str = ""
    fallback_reason: str | None = None


class RoutingError(PyAgentError):
    """The model could not route and no fallback router could either."""


class LLMRouter:
    """``score(query, agents)`` asks a model; ``fallback`` (a router name, or None) covers its failures.

    ``model``: a model string or object (default: ``PYAGENT_ROUTER_MODEL``, else the default
    model, ``PYAGENT_MODEL``). ``decisions`` keeps the last ``keep`` decisions, newest last.
    """

    name = "llm"

    def __init__(self, model: Any = None, *, fallback: str | None = "keyword", keep: int = 100,
                 instructions: str = INSTRUCTIONS) -> None:
        self.model = model
        self.fallback = fallback
        self.instructions = instructions
        self.decisions: deque[Decision] = deque(maxlen=keep)

    def _router_agent(self) -> Any:
        # Built per query (it is cheap): the model is resolved from the settings of the moment.
        model = self.model if self.model is not None else (os.environ.get("PYAGENT_ROUTER_MODEL") or None)
        return agent(self.instructions, name="llm-router", model=model)

    @staticmethod
    def _choice_type(names: list[str]) -> type[BaseModel]:
        return create_model(
            "RoutingChoice",
            agent=(Literal[tuple(names)], Field(description="the name of the chosen agent, exactly as listed")),
            confidence=(float, Field(description="how sure you are that this agent fits, from 0 to 1")),
            reason=(str, Field(description="one sentence: why this agent")),
        )

    def _prompt(self, query: Any, agents: Sequence[Any]) -> str:
        listing = "\n".join(f"- {a.name}: {getattr(a, 'description', '') or '(no description)'}" for a in agents)
        return f"Message: {render_input(query)}\n\nAgents:\n{listing}"

    async def score(self, query: Any, agents: Sequence[Any]) -> list[tuple[str, float]]:
        """The chosen agent scores its confidence, the others 0; on failure, the fallback's scores."""
        names = [a.name for a in agents]
        text = render_input(query)
        try:
            answer = await self._router_agent().run(self._prompt(query, agents), RunContext(),
                                                    output_type=self._choice_type(names), lenient=True)
        except Exception as exc:
            return await self._fall_back(text, agents, f"the model failed: {type(exc).__name__}: {exc}")
        chosen = getattr(answer, "agent", None)
        if chosen not in names:
            shown = answer if isinstance(answer, str) else repr(answer)
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            return await self._fall_back(text, agents, f"the model's answer names no agent of the team: {shown!r}")
        confidence = min(1.0, max(0.0, float(answer.confidence)))
        self.decisions.append(Decision(text, chosen, "llm", confidence, str(answer.reason)))
        return [(n, confidence if n == chosen else 0.0) for n in names]

    async def _fall_back(self, query: str, agents: Sequence[Any], why: str) -> list[tuple[str, float]]:
        if self.fallback is None:
            raise RoutingError(f"llm router could not route {query!r}: {why}; no fallback router is set")
        try:
            name, fallback = resolve_router(self.fallback)
        except PluginNotInstalledError as exc:
            raise RoutingError(
                f"llm router could not route {query!r} ({why}) and its fallback router '{self.fallback}' is not "
                f"installed: {exc}"
            ) from None
        from pyagent.plugin import score_agents

        ranking = await score_agents(fallback, name, query, list(agents))
        chosen = ranking[0][0] if ranking else None
        decision = Decision(query, chosen, name, ranking[0][1] if ranking else None, fallback_reason=why)
        self.decisions.append(decision)
        log.warning("llm router fell back to the %s router for %r: %s", name, query, why)
        _announce(decision)
        return ranking

    def __repr__(self) -> str:
        return f"LLMRouter(model={self.model!r}, fallback={self.fallback!r})"


def _announce(decision: Decision) -> None:
    """A ``router.fallback`` event: through the current workflow run, or to every monitor."""
    data = {"router": "llm", "fallback": decision.by, "query": decision.query, "reason": decision.fallback_reason,
            "chosen": decision.chosen}
    run = current_run()
    if run is not None:
        run.emit(ROUTER_FALLBACK, None, **data)
        return
    runtime = get_runtime()
    runtime.broadcast(Event(ROUTER_FALLBACK, workflow="route", data=data, timestamp=runtime.clock.time()))
