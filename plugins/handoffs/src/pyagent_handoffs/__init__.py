"""pyagent-handoffs: ``handoff.team(agents).route(query)`` and ``handoff.chain(agents, task)``.

The kernel keeps ``handoff(from_agent=, to_agent=, context=)``, agent-requested transfers
(``handoff.to``), the hop limit and the audit trail; this plugin adds the two patterns built on
them. ``handoff.team`` and ``handoff.chain`` find them here through the pattern registry, the way
``AgentPatterns`` finds its patterns.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import hookimpl

from .chain import ChainResult, ChainStep, HandoffChain
from .team import DEFAULT_MIN_CONFIDENCE, HandoffTeam, RouteResult, RouteScores


class _TeamPattern:
    """``build(agents, router=..., ...)`` → a :class:`HandoffTeam`."""

    def build(self, **options: Any) -> HandoffTeam:
        return HandoffTeam(**options)


class _ChainPattern:
    """``build(agents, pass_output=..., ...)`` → a :class:`HandoffChain` (``await chain.run(task)``)."""

    def build(self, **options: Any) -> HandoffChain:
        return HandoffChain(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("handoff_team", _TeamPattern())
    register("handoff_chain", _ChainPattern())


__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "ChainResult",
    "ChainStep",
    "HandoffChain",
    "HandoffTeam",
    "RouteResult",
    "RouteScores",
]
