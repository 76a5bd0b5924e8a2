"""The consensus pattern: agents answer, read each other's answers and revise until they agree.

``AgentPatterns.consensus(agents=[...], task=..., max_rounds=3, agreement_threshold=0.8)``
resolves this plugin by the pattern name ``consensus``.
"""

from __future__ import annotations

from typing import Any

from pyagent.plugin import ConfigurationError, hookimpl

from .agreement import Agreement, measure, normalise, same_text
from .result import ConsensusResult
from .team import AgentFailedError, ConsensusTeam, EquivalenceError, build

__all__ = [
    "AgentFailedError",
    "Agreement",
    "ConsensusPattern",
    "ConsensusResult",
    "ConsensusTeam",
    "EquivalenceError",
    "measure",
    "normalise",
    "same_text",
]


class ConsensusPattern:
    """The team pattern registered as ``consensus``: ``build(**options)`` returns a team."""

    name = "consensus"
    options = ("agents", "max_rounds", "agreement_threshold", "equivalence", "router", "similarity_threshold",
               "timeout")

    def build(self, **options: Any) -> ConsensusTeam:
        """Build a :class:`ConsensusTeam` (see :func:`pyagent_consensus.team.build` for options)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigurationError(
                f"consensus got unknown option(s) {', '.join(unknown)}: it takes agents, task, "
                "max_rounds, agreement_threshold, equivalence, router, similarity_threshold, timeout"
            )
        return build(**options)


@hookimpl
def pyagent_register_patterns(register: Any) -> None:
    register("consensus", ConsensusPattern())
